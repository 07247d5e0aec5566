"""Kill a real search's driver mid-way, resume it, and find no duplicate runs or steps in MLflow.

The search streams an ImageFolder tree of real PNG files and trains a plug-in model from the spec's
folder: resume finds both again where the search found them."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from hpsearch.platform import query
from hpsearch.platform.tracking import tags
from tests.conftest import HPSEARCH, run_cli
from tests.imagefolder_data import write_sklearn_digits_tree

pytestmark = pytest.mark.e2e

TRIALS, EPOCHS = 4, 30


PLUGIN = '''
from torch import nn


def mlp(num_classes, in_channels, image_size, hidden=256, dropout=0.0):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
'''


def _write_spec(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "resume_nets.py").write_text(PLUGIN)
    write_sklearn_digits_tree(tmp_path / "images", per_class=100, size=8)
    spec = {
        "name": "resumable",
        "dataset": {"name": "imagefolder", "root": str(tmp_path / "images"), "image_size": 8, "channels": 1,
                    "in_memory": False},
        "search": {"algorithm": "random", "num_samples": TRIALS, "max_concurrent": 2, "seed": 3},
        "train": {"epochs": EPOCHS, "model": "resume_nets:mlp", "batch_size": 8},
        "plugins": ["models"],
        "space": {"lr": {"loguniform": [0.0005, 0.005]}, "dropout": {"uniform": [0.0, 0.3]}},
    }
    path = project / "resumable.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _trial_runs(uri: str):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`hpsearch.role` = 'trial'")
    return runs


def _wait_for_progress(uri: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until at least one trial completed and another one is part-way through."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the search ended before it could be interrupted"
        runs = _trial_runs(uri)
        if not runs.empty and "metrics.epoch" in runs:
            done = (runs["tags.hpsearch.status"] == "completed").sum()
            partial = ((runs["tags.hpsearch.status"] == "running") & (runs["metrics.epoch"] >= 2)).sum()
            if done >= 1 and partial >= 1:
                time.sleep(2)  # past one experiment-state snapshot period (1 s here)
                return
        time.sleep(0.5)
    raise AssertionError("the search made no progress")


def test_killed_search_resumes_without_duplicates(tmp_path, monkeypatch):
    spec = _write_spec(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    _trial_runs(uri)  # create the store first: two processes must not migrate one new SQLite file at once
    process = subprocess.Popen([*HPSEARCH, "run", str(spec)], cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_progress(uri, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its local Ray, as a crash would
        process.wait()
    before = _trial_runs(uri)
    assert (before["tags.hpsearch.status"] == "running").any()
    # Its driver died without a trace: once it has been silent for SILENT_AFTER_S (1 s here, 180 s
    # for real), readers show the search and its unfinished trials as interrupted, not running.
    assert query.searches(uri).iloc[0]["status"] == "running"
    monkeypatch.setattr(tags, "SILENT_AFTER_S", 1.0)
    time.sleep(1.5)
    assert query.searches(uri).iloc[0]["status"] == "interrupted"
    shown = query.trials("resumable", uri)
    assert "running" not in set(shown["status"]) and "interrupted" in set(shown["status"])

    # Images added since the search began would change its splits: resume refuses, touching nothing.
    extra = tmp_path / "images" / "zero" / "added.png"
    shutil.copy(next((tmp_path / "images" / "one").iterdir()), extra)
    refused = run_cli("resume", "resumable", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri}, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == ("error: cannot resume resumable: the dataset changed since the search began "
                                      "(1,000 images in 10 classes then, 1,001 images in 10 classes now): its trials "
                                      "would go on with other splits; start a new search")
    extra.unlink()

    resumed = run_cli("resume", "resumable", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri}, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming search resumable-" in resumed.stdout

    after = _trial_runs(uri)
    assert len(after) == TRIALS
    assert after["tags.hpsearch.trial_id"].is_unique
    assert set(after["tags.hpsearch.status"]) == {"completed"}
    # Runs that existed before the crash were continued, not replaced.
    assert set(before["run_id"]) <= set(after["run_id"])
    client = MlflowClient(uri)
    for run_id in after["run_id"]:
        for metric in ("val_accuracy", "train_loss"):
            steps = [point.step for point in client.get_metric_history(run_id, metric)]
            assert steps == list(range(1, EPOCHS + 1)), (run_id, metric, steps)
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`hpsearch.role` = 'search'")
    assert len(parents) == 1 and parents.iloc[0]["tags.hpsearch.status"] == "completed"
    assert query.searches(uri).iloc[0]["status"] == "completed"
