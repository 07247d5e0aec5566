"""Fault drill: a search's tracking server goes down for DOWN_S seconds (default 600) mid-search.

Not a speed figure: it checks, at a length no test can afford, what tests/platform/
test_tracking_outage.py checks in 14 s. A search of 2 trials runs against `hpsearch tracking-server`
on 127.0.0.1; once an epoch has reached the server, the server is stopped, the search trains on (and,
if it runs out of trials first, waits for the server), the server comes back on the same port and
store, and every trial run is read back: every epoch once, every run finished, its checkpoint there.
MLflow's own HTTP retries are left at their defaults, so the outage outlasts them.

    .venv/bin/python benchmarks/tracking_outage.py [--down-s 600] [--epochs 60]

Last line: key=value pairs (`lost_steps` and `duplicate_steps` must be 0).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.platform.cluster_fixtures import cluster_env, start_tracking_server  # noqa: E402


def _trial_runs(client: MlflowClient):
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`hpsearch.role` = 'trial'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down-s", type=float, default=600.0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="outage-"))
    spec = {"name": "outage", "search": {"algorithm": "random", "num_samples": 2, "max_concurrent": 2},
            "train": {"epochs": args.epochs, "model": "mlp", "hidden_sizes": [256, 256], "batch_size": 8},
            "space": {"lr": {"loguniform": [0.0005, 0.005]}}}
    (folder / "outage.yaml").write_text(yaml.safe_dump(spec))
    store = f"sqlite:///{folder / 'server.db'}"
    server = start_tracking_server(folder, backend_store_uri=store)
    port = int(server.uri.rsplit(":", 1)[1])
    log = open(folder / "search.log", "w")
    started = time.monotonic()
    search = subprocess.Popen([sys.executable, "-m", "hpsearch.platform.cli", "run", "outage.yaml", "--tracking-uri",
                               server.uri], cwd=folder, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT)
    client = MlflowClient(server.uri)
    while not any(run.data.metrics.get("epoch", 0) >= 1 for run in _trial_runs(client)):
        time.sleep(0.5)
    server.stop()
    down_at = time.monotonic()
    print(f"server down at {down_at - started:.0f} s; the search goes on", flush=True)
    while time.monotonic() - down_at < args.down_s:
        if search.poll() is not None:
            break
        time.sleep(1)
    trained_through = search.poll() is None
    server = start_tracking_server(folder, backend_store_uri=store, port=port)
    up_at = time.monotonic()
    print(f"server back after {up_at - down_at:.0f} s; search still running: {trained_through}", flush=True)
    status = search.wait(timeout=1800)
    caught_up_s = time.monotonic() - up_at
    client = MlflowClient(server.uri)
    runs = _trial_runs(client)
    lost = duplicates = 0
    for run in runs:
        for metric in ("val_accuracy", "train_loss", "epoch"):
            steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
            lost += len(set(range(1, args.epochs + 1)) - set(steps))
            duplicates += len(steps) - len(set(steps))
    finished = sum(run.info.status == "FINISHED" and run.data.tags.get("hpsearch.status") == "completed"
                   for run in runs)
    checkpoints = sum(bool(client.list_artifacts(run.info.run_id, "checkpoint")) for run in runs)
    server.stop()
    behind_lines = sum("writes waiting" in line for line in (folder / "search.log").read_text().splitlines())
    print(f"exit_status={status} down_s={up_at - down_at:.0f} caught_up_s={caught_up_s:.1f} runs={len(runs)} "
          f"finished={finished} checkpoints={checkpoints} lost_steps={lost} duplicate_steps={duplicates} "
          f"behind_lines={behind_lines} log={folder / 'search.log'}")


if __name__ == "__main__":
    main()
