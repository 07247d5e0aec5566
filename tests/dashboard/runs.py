"""Searches written into a real MLflow store by hpsearch's own tracking code, trial by trial, for
tests that need exact control over which runs are new, running or finished.

The parent run is made by `start_search_run`, as `hpsearch run` makes it; trial runs and epochs are
written by a `TrialTracker` driven through its Tune callback methods with stand-in trials, so what
lands in the store is what a real search writes. Each helper starts a tracker on the existing search
(as a restored search does), sends its events and waits for the writer thread to write them.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from mlflow.tracking import MlflowClient

from hpsearch.platform.tracking import (TrialTracker, experiment_id_for, finish_search_run, start_search_run,
                                        write_final_snapshot)
from hpsearch.platform.tracking import tags
from hpsearch.search_spaces.space import BRANCH_KEY
from hpsearch.search_spaces.spec import dump_spec, validate_spec

SEARCH_ID = "handmade-20261122-000000-0000"
EPOCHS = 3  # train.epochs of the spec: a trial that ends sooner was stopped early
SPEC = {
    "name": "handmade",
    "dataset": {"name": "digits"},
    "search": {"algorithm": "random", "metric": "val_accuracy", "mode": "max", "num_samples": 10},
    "train": {"epochs": EPOCHS},
    "space": {
        "batch_size": {"choice": [32, 64]},
        "optimizer": {"choice": {"adam": {"lr": {"loguniform": [1e-4, 0.1]}},
                                 "sgd": {"lr": {"loguniform": [1e-4, 0.1]}, "momentum": {"uniform": [0.8, 0.95]}}}},
    },
}
_HOST = {"hostname": "test-host", "node_ip": "127.0.0.1", "node_id": "f" * 56, "pid": 4242}


@dataclass
class StandInTrial:
    """What `TrialTracker` reads of a Tune trial."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"  # Tune's: RUNNING, TERMINATED or ERROR
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None
    error_file: str | None = None  # none: the tracker records "trial failed"


def make_search(client: MlflowClient, *, search_id: str = SEARCH_ID, metric: str = "val_accuracy",
                mode: str = "max") -> str:
    """A running search with no trials yet; returns its parent run id."""
    spec = validate_spec({**SPEC, "search": {**SPEC["search"], "metric": metric, "mode": mode}})
    experiment_id = experiment_id_for(client, spec.tracking.experiment)
    return start_search_run(client, experiment_id=experiment_id, spec=spec, search_id=search_id,
                            experiment_path=f"/nonexistent/{search_id}", spec_yaml=dump_spec(spec),
                            planned_trials=spec.search.num_samples)


def add_trial(client: MlflowClient, parent_run_id: str, number: int, *, epochs: int = EPOCHS, finish: bool = True,
              optimizer: str = "adam", lr: float | None = None, best: bool = True) -> str:
    """A trial started with these settings, its first `epochs` epochs, ended unless `finish` is False."""
    rng = random.Random(number)
    branch = {BRANCH_KEY: optimizer, "lr": lr if lr is not None else 10 ** rng.uniform(-4, -1)}
    if optimizer == "sgd":
        branch["momentum"] = 0.9
    trial = StandInTrial(_trial_id(number), config={"batch_size": rng.choice([32, 64]), "optimizer": branch})
    with _tracker(client, parent_run_id) as tracker:
        tracker.on_trial_start(0, [trial], trial)
    run_id = _run_of(client, parent_run_id, trial.trial_id)
    log_epochs(client, run_id, range(1, epochs + 1), seed=number, best=best)
    if finish:
        finish_trial(client, run_id)
    return run_id


def log_epochs(client: MlflowClient, run_id: str, epochs: Iterable[int], *, seed: int, best: bool = True,
               diverge_at: int | None = None) -> None:
    """Epoch results as `SearchTrial.step` reports them; `best=False` leaves out best_<metric> and
    best_epoch, and from `diverge_at` on the losses are NaN."""
    run = client.get_run(run_id)
    metric, mode = _metric_of(client, run)
    best_value = run.data.metrics.get(f"best_{metric}")
    best_epoch = int(run.data.metrics.get("best_epoch", 0))
    rng = random.Random(seed)
    trial = StandInTrial(run.data.tags[tags.TRIAL_ID])
    with _tracker(client, run.data.tags[tags.PARENT]) as tracker:
        for epoch in epochs:
            accuracy = min(0.99, 0.5 + 0.1 * epoch + rng.uniform(-0.05, 0.05))
            diverged = diverge_at is not None and epoch >= diverge_at
            loss = math.nan if diverged else 1 - accuracy
            metrics = {"val_accuracy": 0.1 if diverged else accuracy, "val_loss": loss, "train_loss": loss}
            value = metrics[metric]
            if value == value and (best_value is None or (value > best_value if mode == "max" else value < best_value)):
                best_value, best_epoch = value, epoch
            result = {**metrics, "epoch": epoch, "training_iteration": epoch, "timestamp": time.time(),
                      "diverged": diverged, "done": diverged or epoch >= EPOCHS, **_HOST}
            if best:
                result.update({f"best_{metric}": best_value if best_value is not None else value,
                               "best_epoch": best_epoch})
            trial.last_result = result
            tracker.on_trial_result(epoch, [trial], trial, result)


def finish_trial(client: MlflowClient, run_id: str, status: str = "completed") -> None:
    """End a trial as Tune ends it: `failed` through an error, `diverged` after a diverged result,
    `completed` or `stopped_early` as the tracker decides from its epochs (checked against `status`)."""
    run = client.get_run(run_id)
    last_result = {**run.data.metrics, "epoch": int(run.data.metrics.get("epoch", 0)), "diverged": status == "diverged"}
    trial = StandInTrial(run.data.tags[tags.TRIAL_ID], status="ERROR" if status == "failed" else "TERMINATED",
                         last_result=last_result)
    with _tracker(client, run.data.tags[tags.PARENT]) as tracker:
        if status == "failed":
            tracker.on_trial_error(0, [trial], trial)
        else:
            tracker.on_trial_complete(0, [trial], trial)
    written = client.get_run(run_id).data.tags[tags.STATUS]
    if written != status:
        raise ValueError(f"the tracker ended trial {trial.trial_id} as {written!r}, not {status!r}: it ran "
                         f"{last_result['epoch']} of {EPOCHS} epochs")


def fail_before_start(client: MlflowClient, parent_run_id: str, number: int) -> str:
    """A trial that errored before Tune started it (its actor never came up): a run with no params."""
    trial = StandInTrial(_trial_id(number), status="ERROR")
    with _tracker(client, parent_run_id) as tracker:
        tracker.on_trial_error(0, [trial], trial)
    return _run_of(client, parent_run_id, trial.trial_id)


def finish_search(client: MlflowClient, parent_run_id: str, *, status: str = "completed") -> None:
    """Close the search as `hpsearch run` does: the final snapshot, then the parent run's totals."""
    from hpsearch.platform import query

    found = query.find_search(parent_run_id, client.tracking_uri)
    table = query.trials(found, client.tracking_uri)
    counts = {name: int((table["status"] == name).sum()) for name in ("completed", "stopped_early", "diverged",
                                                                       "failed")}
    column = f"best_{found.metric}"
    values = table[column].dropna() if column in table else table.iloc[0:0]
    best = None if values.empty else float(values.max() if found.mode == "max" else values.min())
    write_final_snapshot(client, experiment_id=found.experiment_id, parent_run_id=parent_run_id)
    finish_search_run(client, parent_run_id, status=status, best_value=best, metric=found.metric, counts=counts)


@contextlib.contextmanager
def _tracker(client: MlflowClient, parent_run_id: str) -> Iterator[TrialTracker]:
    """A tracker on the search's parent run; every event sent to it is in the store when this ends,
    and a write the tracker could not make fails the test instead of only being logged."""
    parent = client.get_run(parent_run_id)
    experiment_id = parent.info.experiment_id
    tracker = TrialTracker(tracking_uri=client.tracking_uri, experiment=client.get_experiment(experiment_id).name,
                           search_id=parent.data.tags[tags.SEARCH_ID], metric=parent.data.tags[tags.METRIC],
                           epochs=int(parent.data.params["epochs"]), parent=(experiment_id, parent_run_id))
    errors = _ErrorRecords()
    writer_log = logging.getLogger(TrialTracker.__module__)
    writer_log.addHandler(errors)
    try:
        yield tracker
        tracker.flush()
    finally:
        writer_log.removeHandler(errors)
    assert tracker.failure is None and not errors.messages, (tracker.failure, errors.messages)


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _metric_of(client: MlflowClient, trial_run) -> tuple[str, str]:
    """The metric and mode of the search a trial run belongs to."""
    parent = client.get_run(trial_run.data.tags[tags.PARENT])
    return parent.data.tags[tags.METRIC], parent.data.tags[tags.MODE]


def _run_of(client: MlflowClient, parent_run_id: str, trial_id: str) -> str:
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    (run,) = client.search_runs([experiment_id], filter_string=f"tags.`{tags.PARENT}` = '{parent_run_id}' and "
                                                               f"tags.`{tags.TRIAL_ID}` = '{trial_id}'")
    return run.info.run_id


def _trial_id(number: int) -> str:
    return f"abc_{number:05d}"  # as Tune names trials: <experiment hash>_<number>
