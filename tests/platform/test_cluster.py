"""Searches submitted to a real two-node Ray cluster on 127.0.0.1, tracking to a real MLflow server.

The cluster, the tracking server and the hpsearch commands all run as child processes (see
cluster_fixtures); this process only reads the results back, with a plain MlflowClient over HTTP.
"""
from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray.util.state import list_tasks  # over the dashboard's HTTP API: no Ray in this process

from tests.imagefolder_data import write_sklearn_digits_tree
from tests.platform.cluster_fixtures import (VENV_BIN, cluster_env, local_cluster, postgres,  # noqa: F401
                                             start_tracking_server)

pytestmark = pytest.mark.e2e

# Trials last longer than a fresh trial actor takes to start (about 10 s on 2 busy cores): with
# shorter ones, Tune reuses the head node's warm actor for every trial and the worker idles.
SLOW_CNN = {"model": "cnn", "channels": 96, "depth": 3, "batch_size": 8}


def _write_spec(folder: Path, *, name: str, trials: int, epochs: int, max_failures: int = 1,
                train: dict | None = None, dataset: dict | None = None) -> Path:
    spec = {
        "name": name,
        "dataset": dataset or {"name": "digits"},
        "search": {"algorithm": "random", "metric": "val_accuracy", "mode": "max", "num_samples": trials,
                   "max_concurrent": 2, "seed": 0, "max_failures": max_failures},
        "resources": {"cpus": 1},
        "train": {"epochs": epochs, **(SLOW_CNN if train is None else train)},
        "tracking": {"experiment": name},
        "space": {"lr": {"loguniform": [0.001, 0.01]}, "optimizer": {"choice": ["adam", "sgd"]}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _submit(spec: Path, *, cluster, tracking_uri: str) -> list[str]:
    return [str(VENV_BIN / "hpsearch"), "submit", spec.name, "--address", cluster.dashboard_url,
            "--tracking-uri", tracking_uri, "--wait"]


def _run(command: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=cluster_env(), capture_output=True, text=True, timeout=timeout)


def _trial_runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    return client.search_runs([found.experiment_id], filter_string="tags.`hpsearch.role` = 'trial'",
                              max_results=1000)


def _node_of(run) -> str:
    """The Ray node id prefix in the node tag: 'host (127.0.0.1, node 0123456789ab)'."""
    return run.data.tags["hpsearch.node"].rsplit("node ", 1)[1].rstrip(")")


def _assert_complete_trials(client: MlflowClient, runs: list, *, epochs: int, server) -> None:
    """Every trial's params, per-epoch metrics and checkpoint are on the server, artifacts in its folder."""
    trial_ids = [run.data.tags["hpsearch.trial_id"] for run in runs]
    assert len(trial_ids) == len(set(trial_ids)), f"duplicate runs for one trial: {sorted(trial_ids)}"
    for run in runs:
        assert run.data.tags["hpsearch.status"] == "completed", run.data.tags
        assert {"lr", "optimizer"} <= set(run.data.params)
        for metric in ("val_accuracy", "train_loss", "epoch"):
            steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == list(range(1, epochs + 1)), f"{metric} of {run.info.run_name}: steps {steps}"
        checkpoint = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert {"model.pt", "config.json"} <= checkpoint, (run.info.run_name, checkpoint)
        # Through the server's artifact proxy: stored under its --artifacts-destination.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        stored = server.artifacts / run.info.artifact_uri.removeprefix("mlflow-artifacts:/") / "checkpoint"
        assert (stored / "model.pt").stat().st_size > 0, f"{stored} is missing"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracking-server")
    server = start_tracking_server(folder, backend_store_uri=f"sqlite:///{folder / 'mlflow.db'}")
    yield server
    server.stop()


def test_cluster_listens_on_loopback_only(local_cluster):
    listening = []
    for process in psutil.Process(local_cluster.process.pid).children(recursive=True):
        try:
            listening += [(process.name(), c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert len({port for *_, port in listening}) >= 4, f"too few listening sockets found: {listening}"
    exposed = [entry for entry in listening
               if not (getattr(ipaddress.ip_address(entry[1]), "ipv4_mapped", None)
                       or ipaddress.ip_address(entry[1])).is_loopback]
    assert not exposed, f"the cluster listens beyond loopback: {exposed}"


# A plug-in model beside the spec: `submit` ships the spec's folder, and every node imports it from there.
PLUGIN = '''
from torch import nn


def slow_cnn(num_classes, in_channels, image_size, width=96):
    """Three conv blocks of `width` filters: slow enough on 8x8 images that trials overlap."""
    layers, channels = [], in_channels
    for _ in range(3):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
'''


def test_submitted_search_runs_on_both_nodes_and_tracks_through_the_server(local_cluster, tracking_server,
                                                                        tmp_path):
    # The nodes share this machine's disk: the images are where every node can read them, as on a
    # cluster with a shared filesystem (docs/cluster.md).
    images = write_sklearn_digits_tree(tmp_path / "shared" / "digits", per_class=60, size=8)
    spec = _write_spec(tmp_path / "job", name="cluster-sqlite", trials=4, epochs=3,
                       train={"model": "cluster_nets:slow_cnn", "batch_size": 8},
                       dataset={"name": "imagefolder", "root": str(images), "image_size": 8, "channels": 1,
                                "in_memory": False})
    (spec.parent / "cluster_nets.py").write_text(PLUGIN)

    done = _run(_submit(spec, cluster=local_cluster, tracking_uri=tracking_server.uri), cwd=spec.parent,
                timeout=300)

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "finished: 4 completed" in done.stdout
    assert done.stdout.rstrip().endswith("SUCCEEDED")
    client = MlflowClient(tracking_server.uri)
    runs = _trial_runs(client, "cluster-sqlite")
    assert len(runs) == 4
    assert "data: 600 1x8x8 images in 10 classes" in done.stdout
    for run in runs:  # every trial trained the plug-in, wherever it ran
        config = Path(client.download_artifacts(run.info.run_id, "checkpoint/config.json", str(tmp_path / run.info.run_id)))
        assert '"model": "cluster_nets:slow_cnn"' in config.read_text()
    nodes = {_node_of(run) for run in runs}
    assert nodes == {local_cluster.head_node_id[:12], local_cluster.worker_node_id[:12]}, nodes
    _assert_complete_trials(client, runs, epochs=3, server=tracking_server)
    # The worker's checkpoints were uploaded by tasks on the worker, the head's by the driver.
    uploads = list_tasks(address=local_cluster.dashboard_url, detail=True,
                         filters=[("name", "=", "hpsearch-checkpoint-upload")])
    on_worker = sum(_node_of(run) == local_cluster.worker_node_id[:12] for run in runs)
    worker_uploads = [("FINISHED", local_cluster.worker_node_id)] * on_worker
    assert [(task.state, task.node_id) for task in uploads] == worker_uploads

    # Its winner finalized as a Ray job, trained as a Ray task, logged and registered through the server.
    finalize = [str(VENV_BIN / "hpsearch"), "submit", "finalize", "cluster-sqlite", "--promote", "--address",
                local_cluster.dashboard_url, "--tracking-uri", tracking_server.uri, "--wait", "--no-check"]
    done = _run(finalize, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "submitted finalize of search 'cluster-sqlite'" in done.stdout
    assert "as a Ray task on the cluster" in done.stdout and "registered models:/cluster-sqlite/1" in done.stdout
    version = client.get_model_version_by_alias("cluster-sqlite", "champion")
    final = client.get_run(version.run_id)
    assert final.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the job needs no shared disk
    # MLflow 3 keeps a logged model beside the runs of its experiment: models/<model id>/artifacts.
    stored = list((tracking_server.artifacts / final.info.experiment_id / "models").glob("*/artifacts/MLmodel"))
    assert len(stored) == 1, f"no model under {tracking_server.artifacts}"
    [test_accuracy] = client.get_metric_history(final.info.run_id, "test_accuracy")
    # Loaded back through the server, it classifies the test split's PNG files as its test figures say.
    from hpsearch.platform.final import load_model, predict_rows
    from hpsearch.trainables.images import scan_imagefolder

    model = load_model("models:/cluster-sqlite@champion", tracking_server.uri)
    test = scan_imagefolder(str(images), val_fraction=0.2, test_fraction=0.1, seed=0).test
    rows = predict_rows(model, [Path(test.path(index)) for index in range(len(test))])
    right = sum(row["class"] == Path(row["path"]).parent.name for row in rows)
    assert right / len(rows) == pytest.approx(test_accuracy.value, abs=1e-9)


def test_trials_of_a_lost_node_finish_on_the_head_node(local_cluster, tracking_server, tmp_path):
    spec = _write_spec(tmp_path / "job", name="cluster-lost-node", trials=2, epochs=7, max_failures=2)
    client = MlflowClient(tracking_server.uri)
    worker = local_cluster.worker_node_id[:12]
    search = subprocess.Popen(_submit(spec, cluster=local_cluster, tracking_uri=tracking_server.uri),
                              cwd=spec.parent, env=cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        on_worker = _wait_for_report_on(client, "cluster-lost-node", worker, timeout=180)
        local_cluster.kill_worker()
        killed_at_ms = time.time() * 1000
        output, _ = search.communicate(timeout=300)
    finally:
        if search.poll() is None:
            search.kill()
            search.communicate(timeout=30)
        local_cluster.add_worker()  # the next test gets two nodes again

    assert search.returncode == 0, output[-6000:]
    runs = _trial_runs(client, "cluster-lost-node")
    assert len(runs) == 2
    _assert_complete_trials(client, runs, epochs=7, server=tracking_server)
    # The trial that was on the lost node went on elsewhere, in its own run: epochs after the loss.
    moved = next(run for run in runs if run.info.run_id == on_worker)
    history = client.get_metric_history(moved.info.run_id, "val_accuracy")
    assert max(point.timestamp for point in history) > killed_at_ms
    assert _node_of(moved) == local_cluster.head_node_id[:12], moved.data.tags  # where it finished


def _wait_for_report_on(client: MlflowClient, experiment: str, node: str, *, timeout: float) -> str:
    """The run id of a trial that has reported an epoch from `node`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_experiment_by_name(experiment) is not None:
            for run in _trial_runs(client, experiment):
                if "hpsearch.node" in run.data.tags and _node_of(run) == node:
                    return run.info.run_id
        time.sleep(0.5)
    raise TimeoutError(f"no trial reported from node {node} within {timeout} s")


def test_search_with_a_postgresql_store_and_a_login(local_cluster, postgres, tmp_path, monkeypatch):
    folder = tmp_path / "server"
    folder.mkdir()
    password = "correct-horse-battery"
    server = start_tracking_server(folder, backend_store_uri=postgres.uri, admin_password=password)
    try:
        # Where the trials run is not the point here: small, quick ones.
        spec = _write_spec(tmp_path / "job", name="cluster-postgres", trials=2, epochs=2,
                           train={"model": "mlp", "hidden_sizes": [32]})
        uri_with_login = server.uri.replace("http://", f"http://admin:{password}@")

        done = _run(_submit(spec, cluster=local_cluster, tracking_uri=uri_with_login), cwd=spec.parent,
                    timeout=300)

        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert password not in done.stdout + done.stderr
        assert "admin:***@" not in done.stdout  # the entrypoint carries no user info at all
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(server.uri)
        runs = _trial_runs(client, "cluster-postgres")
        assert len(runs) == 2
        _assert_complete_trials(client, runs, epochs=2, server=server)
        parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
        spec_yaml = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path))).read_text()
        assert f"uri: {server.uri}" in spec_yaml
        stored = [spec_yaml, *parent.data.tags.values(), *parent.data.params.values()]
        stored += [value for run in runs for value in (*run.data.tags.values(), *run.data.params.values())]
        assert not [value for value in stored if password in value]
        assert password not in _job_logs(local_cluster, done.stdout, tmp_path)
    finally:
        server.stop()


def _job_logs(cluster, submit_output: str, folder: Path) -> str:
    job_id = submit_output.split("as Ray job ", 1)[1].split()[0]
    logs = _run([str(VENV_BIN / "hpsearch"), "logs", job_id, "--address", cluster.dashboard_url], cwd=folder,
                timeout=60)
    assert logs.returncode == 0 and "search cluster-postgres" in logs.stdout, logs.stderr
    return logs.stdout


def test_the_tracking_server_starts_without_mlflows_job_runner(tracking_server):
    """MLflow's job runner (GenAI judges, trace roll-ups) is off unless asked for: no processes of its own."""
    children = psutil.Process(tracking_server.process.pid).children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in children]
    assert any("uvicorn" in command or "mlflow" in command for command in commands) or children, commands
    assert not [command for command in commands if "huey" in command], commands
