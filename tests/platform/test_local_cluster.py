"""A Ray cluster running on the machine (`ray start --head`, as the README's cluster section starts
one) does not take over a local search: `hpsearch run` without --address starts a Ray of its own and
says so in its first line."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_cli
from tests.platform.cluster_fixtures import VENV_BIN, cluster_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def running_head():
    """`ray start --head --block` with its address file where a plain ray.init() looks for it ($RAY_TMPDIR),
    stopped through its own process group: `ray stop` would stop every Ray on the machine."""
    temp_dir = Path(tempfile.mkdtemp(prefix="hpl-", dir="/tmp"))  # Unix socket paths must stay short
    env = cluster_env(RAY_TMPDIR=str(temp_dir))
    port = free_port()
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    head_process = psutil.Process(head.pid)
    deadline = time.monotonic() + 90
    while not list(temp_dir.glob("**/ray_current_cluster")) and time.monotonic() < deadline:
        assert head.poll() is None, "ray start --head exited"
        time.sleep(0.5)
    assert list(temp_dir.glob("**/ray_current_cluster")), "the head wrote no address file"
    yield env, f"127.0.0.1:{port}"
    # Every process of that head, at once: a graceful stop takes half a minute, and nothing of it is kept.
    processes = [head_process, *head_process.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_running_cluster_does_not_break_a_local_search(running_head, tmp_path):
    env, address = running_head
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli("run", "digits-quick", "--set", "search.num_samples=2", "--set", "train.epochs=1",
                   "--tracking-uri", uri, cwd=tmp_path, env=env, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert "on a local Ray of its own (127.0.0.1)" in first, first
    assert "2 completed" in done.stdout
