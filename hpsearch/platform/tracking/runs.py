"""A search's parent run and its lifecycle: created, reopened for a resume, finished, and found again."""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from hpsearch import __version__
from hpsearch.platform.tracking.index import TrialRuns, write_index
from hpsearch.platform.tracking.tags import (ALGORITHM, CONSTRAINTS, EXPERIMENT_PATH, HEARTBEAT, HEARTBEAT_EVERY_S,
                                             METRIC, MODE, OBJECTIVES, PARENT, PLANNED_TRIALS, ROLE, SEARCH_ID,
                                             SEARCH_NAME, SPEC_ARTIFACT, SPEC_DIR, STATUS)

DATASET_ARTIFACT = "dataset.json"  # an ImageFolder or plug-in dataset as the search read it: classes, sizes, statistics


class TrackingUnavailable(RuntimeError):
    """The tracking store could not be reached or written."""


def client_for(tracking_uri: str):
    """A client for writing; a new SQLite store starts as a copy of a migrated template (store.py)."""
    from mlflow.tracking import MlflowClient

    from hpsearch.platform.tracking.store import prepare_sqlite_store

    prepare_sqlite_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id_for(client, name: str) -> str:
    """The id of the experiment `name`, created if it does not exist yet.

    Searches started at the same moment all find it missing and all create it: the store keeps one
    (its unique name refuses the others, as RESOURCE_ALREADY_EXISTS), and the others use that one."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:  # refused for another reason than a concurrent creation
                raise
    if experiment.lifecycle_stage != "active":
        number = experiment.experiment_id
        raise TrackingUnavailable(
            f"experiment {name!r} (id {number}) is deleted in this store; restore it (mlflow experiments restore "
            f"--experiment-id {number}), delete it for good (mlflow gc --experiment-ids {number}), or set "
            f"tracking.experiment to another name")
    return experiment.experiment_id


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def start_search_run(client, *, experiment_id: str, spec, search_id: str, experiment_path: str,
                     spec_yaml: str, planned_trials: int, spec_dir: str | None = None,
                     data: Mapping[str, Any] | None = None) -> str:
    """Create the parent run of a search, with its spec as an artifact; `data`: what the search
    decided about an ImageFolder or plug-in dataset (class names, sizes, normalization), recorded
    as params and as `dataset.json`."""
    from mlflow.entities import Param

    tags = {
        ROLE: "search", SEARCH_ID: search_id, SEARCH_NAME: spec.name, STATUS: "running",
        "hpsearch.spec_hash": spec.spec_hash(), ALGORITHM: spec.search.algorithm,
        METRIC: spec.search.metric, MODE: spec.search.mode, "hpsearch.version": __version__,
        EXPERIMENT_PATH: experiment_path, PLANNED_TRIALS: str(planned_trials),
        "mlflow.runName": search_id, HEARTBEAT: str(int(time.time())),
    }
    commit = git_commit()
    if commit:
        tags["hpsearch.git_commit"] = commit
    if spec_dir:
        tags[SPEC_DIR] = spec_dir
    if spec.search.objectives:
        tags[OBJECTIVES] = ",".join(f"{objective.metric}:{objective.mode}" for objective in spec.search.objectives)
    if spec.search.constraints:
        tags[CONSTRAINTS] = "; ".join(spec.search.constraints)
    run = client.create_run(experiment_id, tags=tags, run_name=search_id)
    settings = {
        "dataset": spec.dataset.shown_name, "algorithm": spec.search.algorithm, "metric": spec.search.metric,
        "mode": spec.search.mode, "num_samples": spec.search.num_samples,
        "scheduler": spec.search.scheduler.name, "epochs": spec.train.epochs,
        "max_concurrent": spec.search.max_concurrent, "seed": spec.search.seed,
    }
    if data:
        settings.update({
            "dataset.classes": len(data["classes"]), "dataset.image_shape": "x".join(map(str, data["shape"])),
            **{f"dataset.{part}_images": count for part, count in data["sizes"].items()},
            "dataset.in_memory": data["in_memory"], "dataset.skipped_files": data["skipped"],
            "dataset.mean": ", ".join(f"{value:.4f}" for value in data["mean"]),
            "dataset.std": ", ".join(f"{value:.4f}" for value in data["std"]),
        })
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in settings.items()])
    client.log_text(run.info.run_id, spec_yaml, SPEC_ARTIFACT)
    if data:
        client.log_dict(run.info.run_id, dict(data), DATASET_ARTIFACT)
    return run.info.run_id


def recorded_data(client, run_id: str) -> dict[str, Any] | None:
    """What a search recorded about its ImageFolder or plug-in dataset (`dataset.json`), or None."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            return json.loads(Path(client.download_artifacts(run_id, DATASET_ARTIFACT, folder)).read_text())
        except Exception:  # noqa: BLE001  (a search from before it was recorded: decided anew)
            return None


def finish_search_run(client, run_id: str, *, status: str, best_value: float | None, metric: str,
                      counts: Mapping[str, int]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"trials_{name}", float(count), now, 0) for name, count in counts.items()]
    if best_value is not None:
        metrics.append(Metric(f"best_{metric}", float(best_value), now, 0))
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, STATUS, status)
    mlflow_status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
    client.set_terminated(run_id, mlflow_status)


def write_final_snapshot(client, *, experiment_id: str, parent_run_id: str) -> None:
    """The trial runs as the search leaves them, read in full (test metrics land on a finished run)."""
    runs = TrialRuns(experiment_id, parent_run_id)
    runs.refresh(client)
    write_index(client, runs)


def mark_interrupted(client, parent_run_id: str) -> None:
    """Trials still running when a search stops early wait, marked interrupted, for `hpsearch resume`."""
    runs = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                              filter_string=f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{STATUS}` = 'running'")
    for run in runs:
        client.set_tag(run.info.run_id, STATUS, "interrupted")
        client.set_terminated(run.info.run_id, "KILLED")


def reopen_search_run(client, run_id: str) -> None:
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, HEARTBEAT, str(int(time.time())))
    client.set_tag(run_id, STATUS, "running")


def find_search_run(client, *, experiment: str, search_id: str):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id] if found else [],
                              filter_string=f"tags.`{SEARCH_ID}` = '{search_id}' and tags.`{ROLE}` = 'search'")
    if not runs:
        raise LookupError(f"no parent run of search {search_id!r} in experiment {experiment!r}")
    return runs[0]


def param_value(value: Any) -> str:
    """A parameter as MLflow stores it: a string, cut to MLflow's length limit."""
    return str(value)[:6000]


class Heartbeat:
    """While a search's driver lives, its parent run says so (HEARTBEAT, every HEARTBEAT_EVERY_S), from
    Ray's start to the summary: a reader tells a driver that died without a trace by its silence.
    A beat the store refuses is skipped; the writer of trial runs has its own retries."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpsearch-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        client = client_for(self.tracking_uri)
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                client.set_tag(self.run_id, HEARTBEAT, str(int(time.time())))
            except Exception as error:  # noqa: BLE001  (the store is out of reach: the next beat may do)
                logging.getLogger(__name__).debug("hpsearch: heartbeat not written: %s", error)
