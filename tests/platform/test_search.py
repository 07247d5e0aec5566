"""End-to-end searches on a real local Ray session, checked with plain `mlflow.search_runs`."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from hpsearch.platform.search import run_search
from hpsearch.search_spaces.spec import validate_spec

pytestmark = pytest.mark.e2e

CONDITIONAL_SPACE = {
    "batch_size": 64,
    "model": {"choice": {
        "mlp": {"hidden_sizes": {"grid": [[32], [64]]}},
        "cnn": {"channels": {"grid": [4, 8]}, "depth": {"grid": [1, 2]}},
    }},
    "optimizer": {"choice": {"adam": {"lr": {"loguniform": [0.003, 0.01]}},
                             "sgd": {"lr": {"loguniform": [0.03, 0.1]}, "momentum": {"uniform": [0.8, 0.9]}}}},
}


def _spec(tracking_uri: str, **search) -> object:
    raw = {
        "name": "e2e",
        "search": {"algorithm": "random", "num_samples": 4, "max_concurrent": 2, "seed": 1, **search},
        "train": {"epochs": 3},
        "tracking": {"uri": tracking_uri, "experiment": "e2e"},
        "space": search.pop("space", None) or {
            "lr": {"loguniform": [0.001, 0.01]},
            "model": {"choice": {"mlp": {"hidden_sizes": {"choice": [[32], [64, 32]]}},
                                 "cnn": {"channels": {"int": [4, 8], "step": 4}}}},
            "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.8, 0.95]}}}},
        },
    }
    raw["search"].pop("space", None)
    return validate_spec(raw)


def _runs(tracking_uri: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=["e2e"])


def _children(runs: pd.DataFrame, parent_run_id: str) -> pd.DataFrame:
    return runs[runs["tags.mlflow.parentRunId"] == parent_run_id]


def test_random_search_records_parent_and_child_runs(ray_session, tracking_uri, tmp_path):
    outcome = run_search(_spec(tracking_uri), storage=tmp_path / "results")

    runs = _runs(tracking_uri)
    parents = runs[runs["tags.hpsearch.role"] == "search"]
    assert len(parents) == 1
    parent = parents.iloc[0]
    assert parent["run_id"] == outcome.parent_run_id
    assert parent["tags.hpsearch.algorithm"] == "random"
    assert len(parent["tags.hpsearch.spec_hash"]) == 12
    assert parent["tags.hpsearch.status"] == "completed"
    children = _children(runs, outcome.parent_run_id)
    assert len(children) == 4 and len(runs) == 5
    assert set(children["tags.hpsearch.status"]) == {"completed"}
    assert children["tags.hpsearch.trial_id"].is_unique
    assert children["tags.hpsearch.node"].str.contains("127.0.0.1").all()

    client = MlflowClient(tracking_uri)
    assert "spec.yaml" in {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    # Only the best trial is evaluated on the test split, once, with its confusion matrix.
    evaluated = children[children["metrics.test_accuracy"].notna()]
    assert list(evaluated["run_id"]) == [outcome.best["run_id"]]
    assert outcome.best["test"]["test_accuracy"] == evaluated["metrics.test_accuracy"].item()
    matrix = Path(client.download_artifacts(outcome.best["run_id"], "evaluation/confusion_matrix.csv", str(tmp_path)))
    counts = [list(map(int, line.split(",")[1:])) for line in matrix.read_text().splitlines()[1:]]
    assert len(counts) == 10 and sum(map(sum, counts)) == 359  # digits' held-out test split
    correct = sum(counts[i][i] for i in range(10))
    assert correct / 359 == pytest.approx(outcome.best["test"]["test_accuracy"])
    from PIL import Image

    with Image.open(client.download_artifacts(outcome.best["run_id"], "evaluation/confusion_matrix.png",
                                              str(tmp_path))) as plot:
        assert plot.format == "PNG" and min(plot.size) > 300
    for _, child in children.iterrows():
        # Only the parameters of the trial's own branch are recorded.
        branch_only = {"mlp": "params.hidden_sizes", "cnn": "params.channels"}
        other = {"mlp": "params.channels", "cnn": "params.hidden_sizes"}[child["params.model"]]
        assert isinstance(child[branch_only[child["params.model"]]], str)
        assert pd.isna(child[other])
        assert pd.isna(child["params.momentum"]) == (child["params.optimizer"] == "adam")
        for metric in ("train_loss", "val_loss", "val_accuracy", "lr", "epoch_seconds"):
            history = client.get_metric_history(child["run_id"], metric)
            assert [point.step for point in history] == [1, 2, 3], metric


def test_best_epoch_checkpoint_is_logged(ray_session, tracking_uri, tmp_path):
    # SGD at a learning rate this high peaks early, then gets worse: the best epoch is not the last.
    spec = validate_spec({"name": "e2e", "search": {"algorithm": "grid", "max_concurrent": 2},
                          "train": {"epochs": 6, "model": "mlp", "hidden_sizes": [16], "optimizer": "sgd"},
                          "tracking": {"uri": tracking_uri, "experiment": "e2e"},
                          "space": {"lr": {"grid": [0.9, 1.5]}}})
    outcome = run_search(spec, storage=tmp_path / "results")
    client = MlflowClient(tracking_uri)
    children = _children(_runs(tracking_uri), outcome.parent_run_id)
    assert len(children) == 2 and (children["metrics.best_epoch"] < 6).all(), children["metrics.best_epoch"]
    for _, child in children.iterrows():
        history = client.get_metric_history(child["run_id"], "val_accuracy")
        best_epoch = max(history, key=lambda p: (p.value, -p.step)).step
        assert child["metrics.best_epoch"] == best_epoch
        local = Path(client.download_artifacts(child["run_id"], "checkpoint", str(tmp_path / child["run_id"])))
        state = torch.load(local / "training_state.pt", weights_only=False)
        assert state["epoch"] == best_epoch  # the best epoch's checkpoint, not the last
        assert (local / "model.pt").exists()


def test_grid_search_expands_each_branch_product(ray_session, tracking_uri, tmp_path):
    space = {**CONDITIONAL_SPACE, "optimizer": "adam", "lr": 0.005}
    outcome = run_search(_spec(tracking_uri, algorithm="grid", num_samples=1, space=space),
                         storage=tmp_path / "results")
    children = _children(_runs(tracking_uri), outcome.parent_run_id)
    # mlp: 2 hidden sizes; cnn: 2 channels x 2 depths -> 2 + 4, not (2 + 2) x 2.
    assert len(children) == 6
    mlp = children[children["params.model"] == "mlp"]
    cnn = children[children["params.model"] == "cnn"]
    assert sorted(mlp["params.hidden_sizes"]) == ["[32]", "[64]"]
    assert sorted(zip(cnn["params.channels"], cnn["params.depth"])) == [
        ("4", "1"), ("4", "2"), ("8", "1"), ("8", "2")]


def test_optuna_search_with_conditional_space_and_asha(ray_session, tracking_uri, tmp_path):
    spec = _spec(tracking_uri, algorithm="optuna", num_samples=8, space=CONDITIONAL_SPACE | {
        "model": {"choice": {"mlp": {"hidden_sizes": {"choice": [[32], [64]]}},
                             "cnn": {"channels": {"int": [4, 8]}, "depth": {"int": [1, 2]}}}}},
                 scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2})
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 4})})
    outcome = run_search(spec, storage=tmp_path / "results")
    children = _children(_runs(tracking_uri), outcome.parent_run_id)
    assert len(children) == 8
    statuses = set(children["tags.hpsearch.status"])
    assert "stopped_early" in statuses and statuses <= {"completed", "stopped_early"}
    client = MlflowClient(tracking_uri)
    for _, child in children.iterrows():
        steps = [p.step for p in client.get_metric_history(child["run_id"], "val_loss")]
        assert steps == list(range(1, len(steps) + 1))
        expected_epochs = 4 if child["tags.hpsearch.status"] == "completed" else len(steps)
        assert child["metrics.epoch"] == expected_epochs
        assert pd.isna(child["params.momentum"]) == (child["params.optimizer"] == "adam")
    assert outcome.best is not None and outcome.best["value"] == children["metrics.best_val_accuracy"].max()


def test_failing_trials_are_recorded_as_failed_with_their_error(ray_session, tracking_uri, tmp_path):
    raw = {"name": "e2e", "dataset": {"name": "mnist", "root": str(tmp_path / "no-data"), "download": False},
           "search": {"num_samples": 2, "max_failures": 0}, "train": {"epochs": 1},
           "tracking": {"uri": tracking_uri, "experiment": "e2e"}, "space": {"lr": {"choice": [0.01, 0.001]}}}
    outcome = run_search(validate_spec(raw), storage=tmp_path / "results")
    assert outcome.status == "failed" and outcome.counts["failed"] == 2 and outcome.best is None
    runs = _runs(tracking_uri)
    children = _children(runs, outcome.parent_run_id)
    assert set(children["tags.hpsearch.status"]) == {"failed"} and set(children["status"]) == {"FAILED"}
    assert children["tags.hpsearch.error"].str.contains("dataset MNIST not found").all()
    assert runs[runs["run_id"] == outcome.parent_run_id]["tags.hpsearch.status"].item() == "failed"


def test_a_diverging_trial_stops_as_diverged_and_the_search_goes_on(ray_session, tracking_uri, tmp_path):
    raw = {"name": "e2e", "search": {"algorithm": "grid"},
           "train": {"epochs": 3, "model": "lenet5", "optimizer": "sgd", "momentum": 0.99},
           "tracking": {"uri": tracking_uri, "experiment": "e2e"}, "space": {"lr": {"grid": [10.0, 0.01]}}}
    outcome = run_search(validate_spec(raw), storage=tmp_path / "results")
    assert outcome.status == "completed" and outcome.counts["diverged"] == 1 and outcome.counts["completed"] == 1
    children = _children(_runs(tracking_uri), outcome.parent_run_id)
    diverged = children[children["params.lr"] == "10.0"].iloc[0]
    assert diverged["tags.hpsearch.status"] == "diverged" and diverged["metrics.epoch"] < 3
    assert diverged["tags.hpsearch.error"].startswith(f"diverged at epoch {int(diverged['metrics.epoch'])}: ")
    assert "nan" in diverged["tags.hpsearch.error"] or "inf" in diverged["tags.hpsearch.error"]
    assert outcome.best["config"]["lr"] == 0.01


def test_short_trials_with_more_concurrent_trials_than_slots_all_finish(ray_session, tracking_uri, tmp_path):
    """Trials of a fraction of a second, 4 at a time asked for on 2 CPUs: trials waiting for a slot
    take a free trial process, trials whose own process is starting wait for it (compat), and
    the search runs to its end on at most two processes at a time."""
    spec = validate_spec({
        "name": "e2e", "search": {"algorithm": "grid", "max_concurrent": 4},
        "train": {"epochs": 2, "model": "mlp", "hidden_sizes": [16]},
        "tracking": {"uri": tracking_uri, "experiment": "e2e"},
        "space": {"lr": {"grid": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008]}}})

    outcome = run_search(spec, storage=tmp_path / "results")

    assert outcome.status == "completed" and outcome.counts["completed"] == 8
    trials = _children(_runs(tracking_uri), outcome.parent_run_id)
    assert trials["tags.hpsearch.process"].str.fullmatch(r"\d+").all(), trials["tags.hpsearch.process"].tolist()


def test_a_tracking_store_that_cannot_be_reached_stops_the_search_and_keeps_nothing(ray_session, tmp_path,
                                                                                    monkeypatch):
    """The store is opened before Ray starts: when it fails, nothing runs, no experiment state is
    written, and the error is one line."""
    from tests.dashboard.conftest import free_port

    from hpsearch.platform.tracking import TrackingUnavailable

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = validate_spec({"name": "e2e", "search": {"algorithm": "grid"},
                          "train": {"epochs": 50, "model": "mlp", "hidden_sizes": [16]},
                          "tracking": {"uri": uri, "experiment": "e2e"}, "space": {"lr": {"grid": [0.01, 0.02]}}})

    with pytest.raises(TrackingUnavailable) as raised:
        run_search(spec, storage=tmp_path / "results")

    assert str(raised.value).startswith(f"cannot use the MLflow tracking store {uri}: ")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "results").exists()


def test_a_store_path_that_cannot_work_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    from hpsearch.platform.cli import main

    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    status = main(["run", "digits-quick", "--tracking-uri", f"sqlite:///{tmp_path}/a-file/mlflow.db"])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err == (f"error: cannot use the MLflow tracking store sqlite:///{tmp_path}/a-file/mlflow.db: "
                   f"{tmp_path}/a-file is not a folder\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]
