"""`hpsearch submit`, `jobs`, `logs`, `stop` and `tracking-server`: bad input first (fast, no cluster),
then the commands against a real two-node Ray cluster on 127.0.0.1 (see cluster_fixtures)."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hpsearch.platform.cluster.jobs import STOP_SETTINGS, prepare_submission
from hpsearch.platform.tracking.tags import redact_uri, split_credentials
from hpsearch.platform.tracking.server import ServerSettings
from tests.platform.cluster_fixtures import VENV_BIN, cluster_env, free_port, local_cluster  # noqa: F401

HPSEARCH = str(VENV_BIN / "hpsearch")


def _hpsearch(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([HPSEARCH, *args], cwd=cwd, env=cluster_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _write_spec(folder: Path, name: str, **train) -> Path:
    spec = {"name": name, "dataset": {"name": "digits"},
            "search": {"algorithm": "random", "num_samples": 2, "max_concurrent": 2, "seed": 0},
            "train": {"epochs": 2, "model": "mlp", "hidden_sizes": [32], **train},
            "space": {"lr": {"loguniform": [0.001, 0.01]}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _one_error_line(done: subprocess.CompletedProcess, pattern: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert re.search(pattern, lines[0]), lines[0]


# --------------------------------------------------------------------------- bad input, no cluster

@pytest.mark.parametrize("command", [["submit", "digits-quick"], ["jobs"], ["logs", "raysubmit_x"],
                                     ["stop", "raysubmit_x"]])
def test_a_command_without_a_cluster_address_names_the_option(command, tmp_path):
    _one_error_line(_hpsearch(*command, cwd=tmp_path), r"--address: no Ray cluster given.*RAY_ADDRESS")


@pytest.mark.parametrize(("overrides", "field"), [
    (["search.algorithm=tpee"], r"search\.algorithm: 'tpee'"),
    (["search.num_samples=0"], r"search\.num_samples"),
    (["space.learning_rate=0.1"], r"space\.learning_rate"),
])
def test_a_bad_spec_is_rejected_before_anything_is_submitted(overrides, field, tmp_path):
    # No cluster answers at this address: the only error is the spec's, so nothing tried to reach it.
    address = f"http://127.0.0.1:{free_port()}"
    sets = [argument for override in overrides for argument in ("--set", override)]
    done = _hpsearch("submit", str(_write_spec(tmp_path, "bad")), "--address", address, *sets, cwd=tmp_path)
    _one_error_line(done, field)


@pytest.mark.parametrize(("arguments", "pattern"), [
    (["finalize"], r"finalize: which search\? `hpsearch submit finalize SEARCH`"),
    (["replicate", "s", "--trial", "00001"], r"--trial: not an option of replicate"),
    (["finalize", "s", "--seeds", "3"], r"--seeds: not an option of finalize"),
    (["finalize", "s", "--set", "train.epochs=2"], r"--set: only for a spec; finalize uses the search's own spec"),
    (["replicate", "s", "--seeds", "1"], r"--seeds: 1 is not allowed; from 2 to 50 seeds"),
    (["digits-quick", "extra"], r"extra: a second argument goes only after finalize or replicate"),
    (["digits-quick", "--promote"], r"--promote: only for `hpsearch submit finalize\|replicate SEARCH`"),
])
def test_submitting_finalize_or_replicate_with_bad_arguments_is_one_line(arguments, pattern, capsys):
    from hpsearch.platform.cli import main

    # No cluster answers at this address: the only error is the arguments', so nothing tried to reach it.
    assert main(["submit", *arguments, "--address", f"http://127.0.0.1:{free_port()}", "--retry-for", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines


def test_finalize_and_replicate_jobs_pass_their_options_and_keep_the_password_apart():
    from hpsearch.platform.cluster.jobs import prepare_action

    job = prepare_action("finalize", "digits-quick", options=["--trial", "00003", "--promote"],
                         tracking_uri="http://ann:s3cret@mlflow.internal:5000")
    assert job.entrypoint == ("hpsearch finalize digits-quick --trial 00003 --promote "
                              "--tracking-uri http://mlflow.internal:5000")
    assert job.runtime_env["env_vars"]["MLFLOW_TRACKING_PASSWORD"] == "s3cret" and "s3cret" not in job.entrypoint
    assert job.runtime_env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    replicate = prepare_action("replicate", "x-20261204-1", options=["--top-k", "2", "--seeds", "4"])
    assert replicate.entrypoint == "hpsearch replicate x-20261204-1 --top-k 2 --seeds 4"
    assert replicate.metadata == {"hpsearch_action": "replicate", "hpsearch_search": "x-20261204-1"}


@pytest.mark.parametrize("address", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"])
@pytest.mark.parametrize("command", [["submit", "digits-quick"], ["jobs"]])
def test_an_unreachable_cluster_is_one_line(command, address, tmp_path):
    port = free_port()
    done = _hpsearch(*command, "--address", address.format(port=port), "--retry-for", "0", cwd=tmp_path)
    _one_error_line(done, rf"cannot reach the Ray Jobs API at http://127\.0\.0\.1:{port}: connection refused "
                          rf"\(is the cluster's dashboard listening there\?\)$")


@pytest.mark.parametrize("command", [["submit", "digits-quick"], ["jobs"], ["logs", "raysubmit_x"],
                                     ["stop", "raysubmit_x"]])
def test_a_cluster_that_never_comes_up_is_retried_for_a_bounded_time(command, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = _hpsearch(*command, "--address", url, "--retry-for", "2", cwd=tmp_path)
    took_s = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"the cluster at {url} is not ready (connection refused); retrying for up to 2 s",
        f"error: cannot reach the Ray Jobs API at {url}: connection refused, still after 2 s of retries (is the "
        f"cluster's dashboard listening there? --retry-for SECONDS waits longer)"]
    assert 2 <= took_s < 60, took_s  # it waited, and not for the default 60 s


@pytest.mark.parametrize(("command", "extra"), [(["jobs"], []), (["submit", "digits-quick"], ["--no-check"])])
def test_retry_for_must_not_be_negative(command, extra, tmp_path):
    done = _hpsearch(*command, *extra, "--address", "http://127.0.0.1:1", "--retry-for", "-1", cwd=tmp_path)
    _one_error_line(done, r"^error: --retry-for: -1 is negative")


def test_an_address_from_ray_address_is_used(tmp_path):
    port = free_port()
    done = _hpsearch("jobs", "--retry-for", "0", cwd=tmp_path, RAY_ADDRESS=f"http://127.0.0.1:{port}")
    _one_error_line(done, rf"cannot reach the Ray Jobs API at http://127\.0\.0\.1:{port}")


def test_hpsearch_reports_its_version(tmp_path):
    import hpsearch

    done = _hpsearch("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"hpsearch {hpsearch.__version__}\n"), done


@pytest.mark.parametrize(("address", "pattern"), [("ray://127.0.0.1:10001", r"--address: 'ray://"),
                                                  ("gcs://x:6379", r"not the Ray dashboard's URL")])
def test_an_address_that_is_not_the_dashboard_is_rejected(address, pattern, tmp_path):
    _one_error_line(_hpsearch("jobs", "--address", address, cwd=tmp_path), pattern)


@pytest.mark.parametrize(("arguments", "pattern"), [
    (["--port", "0"], r"--port: 0 is not a TCP port"),
    (["--backend-store-uri", "mlflow.db"], r"--backend-store-uri: 'mlflow.db' is not a database URI"),
    (["--workers", "0"], r"--workers: 0 is too few"),
    (["--auth"], r"--auth: set MLFLOW_AUTH_ADMIN_PASSWORD"),
])
def test_tracking_server_rejects_bad_settings(arguments, pattern, tmp_path):
    _one_error_line(_hpsearch("tracking-server", *arguments, cwd=tmp_path), pattern)


def test_tracking_server_runs_mlflow_server_as_docker_compose_calls_it():
    settings = ServerSettings(host="0.0.0.0", port=5000,
                              backend_store_uri="postgresql://mlflow:s3cret@postgres:5432/mlflow",
                              artifacts_destination="/mlartifacts")
    assert settings.command()[1:] == [
        "-m", "mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
        "--backend-store-uri", "postgresql://mlflow:s3cret@postgres:5432/mlflow",
        "--artifacts-destination", "/mlartifacts", "--serve-artifacts"]
    shown = "\n".join(settings.describe() + settings.warnings())
    assert "s3cret" not in shown and "postgresql://mlflow:***@postgres:5432/mlflow" in shown
    assert "warning: listening on 0.0.0.0" in shown and "add --auth" in shown
    with_login = ServerSettings(host="127.0.0.1", port=5000, backend_store_uri="sqlite:///m.db",
                                artifacts_destination="/a", auth=True)
    assert with_login.command()[-2:] == ["--app-name", "basic-auth"] and not with_login.warnings()


@pytest.mark.parametrize(("uri", "shown"), [
    ("http://admin:s3cret@host:5000", "http://admin:***@host:5000"),
    ("https://admin:p%40ss@host/mlflow?x=1", "https://admin:***@host/mlflow?x=1"),
    ("postgresql://mlflow:s3cret@postgres:5432/mlflow", "postgresql://mlflow:***@postgres:5432/mlflow"),
    ("http://admin@host:5000", "http://admin@host:5000"),
    ("http://host:5000", "http://host:5000"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
])
def test_redact_uri_hides_only_the_password(uri, shown):
    assert redact_uri(uri) == shown


def test_a_submitted_search_carries_its_password_apart_from_the_entrypoint(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    spec = _write_spec(tmp_path, "secret")

    submission = prepare_submission(str(spec), overrides=["train.epochs=3"],
                                    tracking_uri="http://admin:p%40ss w@mlflow.internal:5000")

    assert submission.entrypoint == ("hpsearch run secret.yaml --set train.epochs=3 "
                                     "--tracking-uri http://mlflow.internal:5000")
    assert submission.runtime_env == {"working_dir": str(tmp_path),
                                      "env_vars": {**STOP_SETTINGS, "MLFLOW_TRACKING_USERNAME": "admin",
                                                   "MLFLOW_TRACKING_PASSWORD": "p@ss w"}}
    assert "ray job list" in submission.notes[0]
    assert split_credentials("http://mlflow.internal:5000") == ("http://mlflow.internal:5000", None, None)
    builtin = prepare_submission("digits-quick", tracking_uri="http://mlflow.internal:5000")
    assert builtin.entrypoint == "hpsearch run digits-quick --tracking-uri http://mlflow.internal:5000"
    assert builtin.runtime_env == {"env_vars": STOP_SETTINGS} and not builtin.notes
    assert "head node" in prepare_submission("digits-quick").notes[0]


# --------------------------------------------------------------------------- a real cluster

@pytest.mark.e2e
def test_jobs_logs_and_stop_on_a_real_cluster(local_cluster, tmp_path):
    address = local_cluster.dashboard_url
    store = tmp_path / "quick.db"  # the head node is this machine: an absolute path reaches it
    quick = _write_spec(tmp_path / "quick", "quick")
    # Ray's own CLI works too: the driver attaches to the cluster through the RAY_ADDRESS Ray Jobs sets.
    ray_submit = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(quick.parent),
         "--no-wait", "--", "hpsearch", "run", quick.name, "--tracking-uri", f"sqlite:///{store}"],
        cwd=tmp_path, env=cluster_env(), capture_output=True, text=True, timeout=120)
    assert ray_submit.returncode == 0, ray_submit.stderr
    quick_id = re.search(r"(raysubmit_\w+)", ray_submit.stdout + ray_submit.stderr).group(1)

    followed = _hpsearch("logs", quick_id, "--follow", "--address", address, cwd=tmp_path, timeout=300)

    assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]
    assert "finished: 2 completed" in followed.stdout and followed.stdout.rstrip().endswith("SUCCEEDED")
    runs = MlflowClient(f"sqlite:///{store}").search_runs(
        [MlflowClient(f"sqlite:///{store}").get_experiment_by_name("hpsearch").experiment_id],
        filter_string="tags.`hpsearch.role` = 'trial'")
    assert sorted(run.data.tags["hpsearch.status"] for run in runs) == ["completed", "completed"]

    long = _write_spec(tmp_path / "long", "long", epochs=10000)  # many minutes: it will be stopped
    long_store = f"sqlite:///{tmp_path / 'long.db'}"
    submitted = _hpsearch("submit", str(long), "--address", address, "--tracking-uri", long_store, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    long_id = re.search(r"as Ray job (raysubmit_\w+)", submitted.stdout).group(1)
    assert f"hpsearch logs {long_id} --follow --address {address}" in submitted.stdout
    assert f"hpsearch stop {long_id} --address {address}" in submitted.stdout
    assert f"{address}/#/jobs/{long_id}" in submitted.stdout
    assert f"note: the search tracks to {long_store} on the cluster's head node" in submitted.stderr
    assert "checking the cluster's hpsearch and Ray versions" in submitted.stderr
    assert "warning" not in submitted.stderr and "not ready" not in submitted.stderr, submitted.stderr
    _wait_for_log(long_id, "search long-", address=address, cwd=tmp_path)
    _wait_for_epochs(tmp_path / "long.db", job_id=long_id, address=address, cwd=tmp_path)

    table = _hpsearch("jobs", "--address", address, cwd=tmp_path)
    assert table.returncode == 0
    assert re.search(rf"{quick_id}\s+SUCCEEDED\s+hpsearch run quick.yaml", table.stdout), table.stdout
    assert re.search(rf"{long_id}\s+RUNNING\s+hpsearch run long.yaml", table.stdout), table.stdout
    assert "node-versions" not in table.stdout  # the version check's job is Ray's, not a search

    stopped = _hpsearch("stop", long_id, "--address", address, cwd=tmp_path, timeout=180)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"job {long_id} STOPPED", stopped
    # Stopped as by Ctrl-C: the search and its trials are closed as interrupted, ready to resume.
    assert "hpsearch resume long-" in _hpsearch("logs", long_id, "--address", address, cwd=tmp_path).stdout
    store = MlflowClient(long_store)
    runs = store.search_runs([store.get_experiment_by_name("hpsearch").experiment_id])
    assert {run.data.tags["hpsearch.status"] for run in runs} == {"interrupted"}, [run.data.tags for run in runs]
    assert re.search(rf"{long_id}\s+STOPPED", _hpsearch("jobs", "--address", address, cwd=tmp_path).stdout)
    assert _hpsearch("logs", long_id, "--follow", "--address", address, cwd=tmp_path).returncode == 130
    again = _hpsearch("stop", long_id, "--address", address, cwd=tmp_path)
    assert again.stdout.strip() == f"job {long_id} had already ended: STOPPED"

    for command in (["logs", "raysubmit_nope"], ["stop", "raysubmit_nope"], ["logs", "raysubmit_nope", "--follow"]):
        # Not retried: a job that does not exist will not appear by waiting.
        _one_error_line(_hpsearch(*command, "--address", address, cwd=tmp_path, timeout=30), r"no job 'raysubmit_nope'")
    before = _hpsearch("jobs", "--address", address, cwd=tmp_path).stdout
    rejected = _hpsearch("submit", str(quick), "--set", "search.algorithm=tpee", "--address", address, cwd=tmp_path)
    _one_error_line(rejected, r"search\.algorithm")
    assert _hpsearch("jobs", "--address", address, cwd=tmp_path).stdout == before


def _wait_for_epochs(path: Path, *, job_id: str, address: str, cwd: Path, timeout: float = 120) -> None:
    """Until every trial of the only search in the SQLite store at `path` has reported an epoch.

    The store is opened only once the job has made it: an MlflowClient opening a store that does not
    exist yet creates it, and two processes creating one SQLite store at once break each other."""
    deadline = time.monotonic() + timeout
    store = None
    while time.monotonic() < deadline:
        if store is None and not path.exists():
            time.sleep(0.5)
            continue
        store = store or MlflowClient(f"sqlite:///{path}")
        experiment = store.get_experiment_by_name("hpsearch")
        runs = store.search_runs([experiment.experiment_id],
                                 filter_string="tags.`hpsearch.role` = 'trial'") if experiment else []
        if len(runs) == 2 and all(run.data.metrics.get("epoch", 0) >= 1 for run in runs):
            return
        time.sleep(1)
    log = _hpsearch("logs", job_id, "--address", address, cwd=cwd).stdout
    raise TimeoutError(f"the trials reported no epoch within {timeout} s; the job's log:\n{log[-5000:]}")


def _wait_for_log(job_id: str, text: str, *, address: str, cwd: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = _hpsearch("logs", job_id, "--address", address, cwd=cwd)
        assert logs.returncode == 0, logs.stderr
        if text in logs.stdout:
            return
        time.sleep(1)
    raise TimeoutError(f"{text!r} not in the log of job {job_id} after {timeout} s")
