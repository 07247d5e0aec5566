"""Accuracy against cost on real searches, each with two objectives and a static constraint, on a real
local Ray and a real SQLite store, the front checked against the runs themselves: Optuna's
multi-objective TPE on digits, and a random search (its front computed from the trials) on the real
MNIST mini split."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from mlflow.tracking import MlflowClient

from hpsearch import query
from hpsearch.platform import compat
from hpsearch.platform.cli import main
from hpsearch.platform.search import run_search
from hpsearch.platform.tune_space import make_optuna_searcher
from hpsearch.search_spaces.spec import validate_spec
from tests.conftest import shared_mnist_root

COSTS = ("params", "macs", "size_mb", "latency_ms", "latency_batch_ms")
LIMIT = 20_000
TRIALS = 10
# Under LIMIT on both image sizes: mlp [16] and cnn with 8 channels; over it: mlp [64] on 28x28 images,
# mlp [256, 128] on both, and the deeper wide cnns.
SPACE = {"model": {"choice": {"mlp": {"hidden_sizes": {"choice": [[16], [64], [256, 128]]}},
                              "cnn": {"channels": {"choice": [8, 32]}, "depth": {"int": [1, 3]}}}}}
SEARCHES = {
    "digits-optuna": ({"name": "digits"}, "optuna", 2),
    "mnist-random": ({"name": "mnist", "val_fraction": 0.2, "download": False}, "random", 1),
}


@pytest.fixture(scope="module", params=sorted(SEARCHES))
def traded_off(request, ray_session, tmp_path_factory):
    dataset, algorithm, epochs = SEARCHES[request.param]
    if dataset["name"] == "mnist":
        dataset = {**dataset, "root": str(shared_mnist_root())}
    folder = tmp_path_factory.mktemp("objectives")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = validate_spec({
        "name": f"tradeoff-{request.param}",
        "dataset": dataset,
        "search": {"algorithm": algorithm, "num_samples": TRIALS, "max_concurrent": 2, "seed": 1,
                   "objectives": [{"metric": "val_accuracy", "mode": "max"}, {"metric": "latency_batch_ms", "mode": "min"}],
                   "constraints": [f"params <= {LIMIT}"]},
        "train": {"epochs": epochs},
        "tracking": {"uri": uri, "experiment": "tradeoff"},
        "space": SPACE,
    })
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        outcome = run_search(spec, storage=folder / "results")
    return outcome, uri, out.getvalue(), epochs


pytestmark = pytest.mark.e2e


def _runs(uri: str, parent_run_id: str) -> list:
    return MlflowClient(uri).search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


def test_every_trial_logs_its_costs_once_and_no_infeasible_trial_trains(traded_off) -> None:
    outcome, uri, out, epochs = traded_off
    client = MlflowClient(uri)
    runs = _runs(uri, outcome.parent_run_id)
    infeasible = [run for run in runs if run.data.tags["hpsearch.status"] == "infeasible"]
    assert outcome.counts["infeasible"] == len(infeasible) >= 1, outcome.counts
    for run in runs:
        assert all(run.data.metrics[name] > 0 for name in COSTS), run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "latency_ms")) == 1  # logged once
    for run in infeasible:  # ended before its first epoch, saying why
        assert run.data.metrics["params"] > LIMIT and f"params <= {LIMIT}" in run.data.tags["hpsearch.infeasible"]
        assert not client.get_metric_history(run.info.run_id, "val_accuracy")
        assert not client.list_artifacts(run.info.run_id, "checkpoint")
    for run in runs:
        if run not in infeasible:
            assert run.data.metrics["params"] <= LIMIT and run.data.metrics["epoch"] == epochs
    assert f"{len(infeasible)} of {TRIALS} trials infeasible, {len(infeasible)} of them ended before training" in out
    # The batch's latency grows with the work the model does, on the one device they share.
    by_macs = sorted(runs, key=lambda run: run.data.metrics["macs"])
    assert by_macs[0].data.metrics["latency_batch_ms"] < by_macs[-1].data.metrics["latency_batch_ms"]


def test_the_front_is_the_non_dominated_feasible_trials_of_the_runs(traded_off) -> None:
    outcome, uri, out, epochs = traded_off
    feasible = [run for run in _runs(uri, outcome.parent_run_id) if run.data.tags["hpsearch.status"] == "completed"]
    points = {run.info.run_id: (run.data.metrics["best_val_accuracy"], run.data.metrics["latency_batch_ms"])
              for run in feasible}
    expected = {run_id for run_id, (accuracy, latency) in points.items()
                if not any(a >= accuracy and l <= latency and (a > accuracy or l < latency)
                           for other, (a, l) in points.items() if other != run_id)}
    front = query.pareto(outcome.search_id, uri)
    assert set(front["run_id"]) == expected and front["best_val_accuracy"].is_monotonic_decreasing
    assert "Pareto front, val_accuracy (max) against latency_batch_ms (min)" in out
    # The live view counted the same front as trials ended: the last trial's line says its size.
    last = [line for line in out.splitlines() if f" {TRIALS}/{TRIALS} done · " in line][0]
    assert f" · front {len(front)} trial{'' if len(front) == 1 else 's'}" in last, last
    # The summary says how to read the front again, from the store the search wrote to.
    name = outcome.search_id.rsplit("-", 3)[0]
    assert f"  hpsearch pareto {name} --tracking-uri {uri}      # the trade-off" in out
    assert f"  hpsearch trials {name} --tracking-uri {uri}      # every trial" in out
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        assert main(["pareto", outcome.search_id, "--format", "json", "--tracking-uri", uri]) == 0
    assert [row["run_id"] for row in json.loads(shown.getvalue())] == front["run_id"].tolist()
    # The best trial is feasible: one that breaks a constraint is no candidate.
    assert query.best(outcome.search_id, uri)["run_id"] in points


def test_optuna_is_told_each_trials_constraints_and_best_value() -> None:
    spec = validate_spec({"name": "x", "search": {"algorithm": "optuna"}, "space": {"lr": {"loguniform": [0.001, 0.1]}}})
    searcher = make_optuna_searcher(spec.space, metric="val_accuracy", mode="max", seed=0,
                                    objectives=[("val_accuracy", "max"), ("params", "min")],
                                    constraints=["params <= 100"])
    searcher.suggest("a"), searcher.suggest("b")
    study = compat.optuna_trial_of(searcher, "a").study  # the study OptunaSearch asks, to see what it was told
    searcher.on_trial_complete("a", {"val_accuracy": 0.5, "best_val_accuracy": 0.9, "params": 150.0})
    searcher.on_trial_complete("b", {"val_accuracy": 0.5, "best_val_accuracy": 0.8, "params": 50.0})
    assert [trial.values for trial in study.trials] == [[0.9, 150.0], [0.8, 50.0]]  # the best epoch's value
    assert [trial.constraints for trial in study.trials] == [{"params <= 100": 50.0}, {"params <= 100": -50.0}]
    assert [trial.number for trial in study.best_trials] == [1]  # the infeasible one is on no front

