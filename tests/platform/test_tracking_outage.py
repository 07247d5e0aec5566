"""A tracking server that goes away for longer than MLflow's own retries loses nothing: the search
trains on, keeps what it could not write, says so in its live view, and writes it all, in order and
once, when the server is back."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import HPSEARCH
from tests.platform.cluster_fixtures import cluster_env, start_tracking_server

pytestmark = pytest.mark.e2e

TRIALS, EPOCHS = 2, 16
DOWN_S = 14  # longer than the live view's 10 s between status lines; MLflow's retries are off here


def _spec(folder: Path) -> Path:
    spec = {"name": "outage", "search": {"algorithm": "random", "num_samples": TRIALS, "max_concurrent": 2},
            "train": {"epochs": EPOCHS, "model": "mlp", "hidden_sizes": [256, 256], "batch_size": 8},
            "space": {"lr": {"loguniform": [0.0005, 0.005]}}}
    path = folder / "outage.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _epochs_written(client: MlflowClient) -> int:
    try:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  filter_string="tags.`hpsearch.role` = 'trial'")
    except Exception:  # noqa: BLE001  (not up yet)
        return 0
    return max((int(run.data.metrics.get("epoch", 0)) for run in runs), default=0)


def test_a_search_outlasts_a_tracking_server_outage_and_loses_nothing(tmp_path):
    store = f"sqlite:///{tmp_path / 'server.db'}"
    server = start_tracking_server(tmp_path, backend_store_uri=store)
    port = int(server.uri.rsplit(":", 1)[1])
    # No retries of MLflow's own and a short timeout: every write in the outage fails at once.
    env = cluster_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    search = subprocess.Popen([*HPSEARCH, "run", str(_spec(tmp_path)), "--tracking-uri", server.uri],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = MlflowClient(server.uri)
        deadline = time.monotonic() + 180
        while _epochs_written(client) < 2:
            assert search.poll() is None, search.stdout.read()
            assert time.monotonic() < deadline, "no epoch reached the tracking server"
            time.sleep(0.5)
        server.stop()
        time.sleep(DOWN_S)
        assert search.poll() is None, "the search ended while the tracking server was down"
        server = start_tracking_server(tmp_path, backend_store_uri=store, port=port)
        output, _ = search.communicate(timeout=300)
    finally:
        if search.poll() is None:
            search.kill()
        server.stop()
    assert search.returncode == 0, output[-3000:]
    assert "writes waiting (store out of reach" in output, output[-3000:]
    assert f"{TRIALS} completed" in output, output[-3000:]

    client = MlflowClient(store)  # what the server wrote, read from its store directly
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`hpsearch.role` = 'trial'")
    assert len(runs) == TRIALS and len({run.data.tags["hpsearch.trial_id"] for run in runs}) == TRIALS
    for run in runs:
        assert run.data.tags["hpsearch.status"] == "completed" and run.info.status == "FINISHED"
        for metric in ("val_accuracy", "train_loss", "epoch"):
            steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, EPOCHS + 1)), (run.info.run_id, metric, steps)
    checkpoints = {path.parents[2].name for path in (tmp_path / "mlartifacts").glob("**/checkpoint/model.pt")}
    assert checkpoints == {run.info.run_id for run in runs}, checkpoints
