"""A real multi-node Ray cluster and a real MLflow tracking server on 127.0.0.1, for the cluster tests.

Everything runs in child processes, never in the pytest process: other tests share that process
with a local `ray.init` (conftest's `ray_session`), and a driver can only be attached to one Ray.

The cluster is `ray.cluster_utils.Cluster` in a helper process (this module run with
`python -m tests.platform.cluster_fixtures`), not `ray start`: with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps every Ray server on loopback, `ray start --address`
refuses to start a second node, and without it Ray rewrites 127.0.0.1 to the machine's external
address and binds the GCS to all interfaces. The helper prints one JSON line describing the cluster,
then obeys lines on stdin: `kill-worker` kills the worker node's processes with SIGKILL (a node
lost, not a graceful stop), `add-worker` starts a new worker node; end of input shuts the cluster down.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env(**extra: str) -> dict[str, str]:
    """The environment of every process that starts or uses the cluster: the venv's commands first."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                          "MLFLOW_TRACKING_PASSWORD")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@dataclass
class LocalCluster:
    """A head node and one worker node on 127.0.0.1, in a helper process."""

    process: subprocess.Popen
    dashboard_url: str
    gcs_address: str
    head_node_id: str
    worker_node_id: str
    temp_dir: Path

    def kill_worker(self, timeout: float = 60) -> None:
        reply = self._command("kill-worker", timeout=timeout)
        assert reply.get("killed") == self.worker_node_id, reply

    def add_worker(self, timeout: float = 120) -> None:
        self.worker_node_id = self._command("add-worker", timeout=timeout)["worker_node_id"]

    def _command(self, command: str, *, timeout: float) -> dict:
        self.process.stdin.write(f"{command}\n")
        self.process.stdin.flush()
        return _read_json_line(self.process, timeout=timeout)

    def shutdown(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _read_json_line(process: subprocess.Popen, *, timeout: float) -> dict:
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the cluster helper exited with status {process.wait(timeout=10)}")
            if line.startswith("{"):
                return json.loads(line)
    raise TimeoutError(f"the cluster helper said nothing for {timeout} s")


def start_cluster(*, timeout: float = 120, dashboard_port: int | None = None) -> LocalCluster:
    """A new cluster, its Jobs API ready; its dashboard on `dashboard_port` when given, else a free port."""
    # Unix socket paths are limited to about 100 bytes: a short folder, not pytest's tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="hpc-", dir="/tmp"))
    dashboard_port = dashboard_port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.platform.cluster_fixtures", "--temp-dir", str(temp_dir),
         "--dashboard-port", str(dashboard_port)],
        cwd=REPO, env=cluster_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(temp_dir / "helper.log", "w"), text=True, start_new_session=True)
    try:
        info = _read_json_line(process, timeout=timeout)
    except Exception:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log = (temp_dir / "helper.log").read_text()[-3000:]
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise RuntimeError(f"the local Ray cluster did not start:\n{log}") from None
    cluster = LocalCluster(process=process, dashboard_url=info["dashboard_url"], gcs_address=info["gcs_address"],
                           head_node_id=info["head_node_id"], worker_node_id=info["worker_node_id"],
                           temp_dir=temp_dir)
    try:
        _wait_for_jobs_api(cluster.dashboard_url, timeout=timeout)
    except Exception:
        cluster.shutdown()
        raise
    return cluster


def _wait_for_jobs_api(url: str, *, timeout: float) -> None:
    """The dashboard answers before its job agent does: run one trivial job to the end."""
    from ray.job_submission import JobSubmissionClient  # HTTP only: no Ray in this process

    deadline = time.monotonic() + timeout
    client = JobSubmissionClient(url)
    while True:
        try:
            job_id = client.submit_job(entrypoint="true")
            break
        except Exception:  # noqa: BLE001  (not up yet)
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    while str(client.get_job_status(job_id).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"a trivial job did not finish within {timeout} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def local_cluster():
    """One cluster per test module (a module imports this fixture): never two at once on 2 cores."""
    cluster = start_cluster()
    yield cluster
    cluster.shutdown()


# --------------------------------------------------------------------------- MLflow tracking server

@dataclass
class TrackingServer:
    process: subprocess.Popen
    uri: str
    artifacts: Path
    log: Path

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_tracking_server(folder: Path, *, backend_store_uri: str, admin_password: str | None = None,
                          timeout: float = 120, port: int | None = None) -> TrackingServer:
    """`hpsearch tracking-server` on 127.0.0.1 and `port` (default: a free one), its artifacts under
    `folder`; with a login (`--auth`) when given the admin's password."""
    import urllib.request

    port = port or free_port()
    artifacts = folder / "mlartifacts"
    log = folder / "tracking-server.log"
    login = {"MLFLOW_AUTH_ADMIN_PASSWORD": admin_password} if admin_password else {}
    process = subprocess.Popen(
        [str(VENV_BIN / "hpsearch"), "tracking-server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts), "--workers", "2",
         *(["--auth"] if admin_password else [])],
        cwd=folder, env=cluster_env(**login), stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    server = TrackingServer(process=process, uri=uri, artifacts=artifacts, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the tracking server exited with status {process.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the tracking server did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class Postgres:
    data: Path
    port: int

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"


def _as_postgres(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # initdb and the server refuse to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout, check=True)


@pytest.fixture
def postgres(tmp_path: Path):
    """A throwaway PostgreSQL server on 127.0.0.1 and a free port, with an empty `mlflow` database."""
    if not POSTGRES_BIN:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
                    "apt-get install postgresql, as .ci/run does)")
    bin_dir = POSTGRES_BIN[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="hpg-", dir="/tmp"))  # short: it holds the server's socket
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                 "-o", f"-k {folder} -h 127.0.0.1 -p {port}", "start", timeout=90)
    try:
        _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield Postgres(data=data, port=port)
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- the helper process

def _serve_cluster(temp_dir: str, dashboard_port: int) -> None:
    """Start a head node and a worker node, print what they are, obey stdin until it closes."""
    from ray.cluster_utils import Cluster

    # RAY_TMPDIR points here too: the address file of `ray.init(address="auto")` stays out of /tmp/ray.
    temp_dir = os.path.join(temp_dir, "ray")
    os.makedirs(temp_dir, exist_ok=True)
    head_args = {
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "temp_dir": temp_dir,
        "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
        "dashboard_agent_listen_port": free_port(), "gcs_server_port": free_port(),
    }
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    workers_started = 0

    def add_worker():
        nonlocal workers_started
        workers_started += 1
        # A folder of its own, as on another host: nodes sharing one would unpack a job's working_dir
        # into the same place, the second deleting the first's while the job's driver runs in it.
        node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1",
                                temp_dir=os.path.join(temp_dir, f"w{workers_started}"))
        cluster.wait_for_nodes()
        return node

    worker = add_worker()
    print(json.dumps({
        "dashboard_url": f"http://127.0.0.1:{dashboard_port}", "gcs_address": cluster.gcs_address,
        "head_node_id": cluster.head_node.node_id, "worker_node_id": worker.node_id,
    }), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "kill-worker":
                cluster.remove_node(worker, allow_graceful=False)
                print(json.dumps({"killed": worker.node_id}), flush=True)
            elif line.strip() == "add-worker":
                worker = add_worker()
                print(json.dumps({"worker_node_id": worker.node_id}), flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--dashboard-port", type=int, required=True)
    arguments = parser.parse_args()
    # Before Ray is imported: every server on loopback, and Ray's files (its "current cluster" address
    # file included, which a plain ray.init() would attach to) under --temp-dir.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_TMPDIR"] = arguments.temp_dir
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # jobs run `hpsearch`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # through `finally`: the cluster shuts down
    _serve_cluster(arguments.temp_dir, arguments.dashboard_port)
