"""A cluster that is not ready yet, or runs other versions: `hpsearch submit` retries, and checks every
node's hpsearch and Ray first. The classification of errors runs without a cluster; the rest runs
real probe jobs on a real two-node Ray cluster on 127.0.0.1 (see cluster_fixtures), started only
after a submission already waits for it."""
from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import ray
import requests
from ray.exceptions import AuthenticationError

import hpsearch
from hpsearch.platform.cluster import jobs, versions
from hpsearch.platform.cluster.retry import transient_reason
from hpsearch.platform.cluster.versions import ClusterVersions, NodeVersions
from tests.platform.cluster_fixtures import REPO, VENV_BIN, LocalCluster, cluster_env, free_port, start_cluster

HPSEARCH = str(VENV_BIN / "hpsearch")
OURS = hpsearch.__version__


# --------------------------------------------------------------------------- which errors are retried

def _real_connection_error(url: str) -> Exception:
    try:
        requests.get(url, timeout=10)
    except requests.RequestException as error:
        return error
    raise AssertionError(f"{url} answered")


@pytest.mark.parametrize(("error", "reason"), [
    # As Ray's JobSubmissionClient raises them (ray/dashboard/modules/dashboard_sdk.py, job_head.py).
    (RuntimeError("Request failed with status code 500: No available agent to submit job, please try again "
                  "later.."), "no available agent"),
    (RuntimeError("Request failed with status code 503: Service Unavailable."), "HTTP 503"),
    (RuntimeError("Request failed with status code 502: Bad Gateway."), "HTTP 502"),
    (RuntimeError("Request failed with status code 504: Gateway Timeout."), "HTTP 504"),
    (RuntimeError("Request failed with status code 404: Job raysubmit_x does not exist."), None),
    (RuntimeError("Request failed with status code 500: Traceback ... ValueError: bad runtime_env."), None),
    (RuntimeError("Version check returned 404. Jobs API is not supported on the Ray cluster."), None),
    (AuthenticationError("Authentication required"), None),
    (requests.ReadTimeout("read timed out"), "timed out"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
])
def test_only_a_cluster_that_is_starting_or_overloaded_is_retried(error, reason):
    assert transient_reason(error) == reason


def test_a_refused_connection_is_retried_and_an_unknown_host_is_not():
    assert transient_reason(_real_connection_error(f"http://127.0.0.1:{free_port()}/api/version")) == \
        "connection refused"
    assert transient_reason(_real_connection_error("http://no-such-host.invalid:8265/api/version")) is None


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """What a proxy answers while the head node behind it is down."""

    def do_GET(self):  # noqa: N802  (http.server's name)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_proxy_answering_503_is_retried_then_one_line(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        done = subprocess.run([HPSEARCH, "jobs", "--address", url, "--retry-for", "2"], cwd=tmp_path,
                              env=cluster_env(), capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"the cluster at {url} is not ready (HTTP 503); retrying for up to 2 s",
        f"error: cannot reach the Ray Jobs API at {url}: HTTP 503, still after 2 s of retries (is the "
        f"cluster's dashboard listening there? --retry-for SECONDS waits longer)"]


# --------------------------------------------------------------------------- comparing versions

def _node(number: int, hpsearch_version: str | None = OURS, ray_version: str = ray.__version__, **fields):
    return NodeVersions(node_id=f"{number:08d}" + "f" * 48, address=f"10.0.0.{number}", hpsearch=hpsearch_version,
                        ray=ray_version, python="3.11.7", **fields)


@pytest.mark.parametrize(("found", "problems"), [
    (ClusterVersions(command=OURS, nodes=(_node(1), _node(2))), []),
    (ClusterVersions(command=None, command_missing=True),
     [rf"^the cluster at URL has no hpsearch \(its head node's shell: `hpsearch: not found`\): "
      rf"install hpsearch=={OURS} \(and its dependencies\) on every node, .* or use the docker/ images$"]),
    (ClusterVersions(command="0.0.1", nodes=(_node(1, "0.0.1"), _node(2, "0.0.1"))),
     [rf"^the cluster at URL runs hpsearch 0\.0\.1, this machine hpsearch {OURS}: install hpsearch=={OURS} .*"
      rf"or submit from a machine with hpsearch 0\.0\.1$"]),
    (ClusterVersions(command=OURS, nodes=(_node(1), _node(2, None), _node(3, "0.0.1"))),
     [r"^nodes of the cluster at URL differ from this machine's hpsearch .*: no hpsearch on 10\.0\.0\.2 "
      r"\(node 00000002\); hpsearch 0\.0\.1 on 10\.0\.0\.3 \(node 00000003\); every node needs the same version"]),
    (ClusterVersions(command=OURS, nodes=(_node(1, ray_version="2.9.3"),)),
     [rf"^this machine has Ray {re.escape(ray.__version__)}, the cluster at URL Ray 2\.9\.3: a Ray client must "
      rf"match its cluster's Ray; install ray\[default\]==2\.9\.3 here, or run Ray .* on the cluster$"]),
])
def test_versions_that_differ_are_named_with_what_to_install(found, problems):
    found_problems, warnings = versions.compare(found, url="URL")
    assert len(found_problems) == len(problems) and not warnings, found_problems
    for problem, pattern in zip(found_problems, problems):
        assert re.search(pattern, problem), problem


def test_a_check_that_cannot_finish_warns_and_lets_the_search_go():
    found = ClusterVersions(command=OURS, nodes=(_node(1), _node(2, None, error="no answer within 20 s")),
                            trouble=None)
    assert versions.compare(found, url="URL") == (
        [], ["warning: the version check got no answer from 10.0.0.2 (node 00000002) (no answer within 20 s); "
             "submitting anyway"])
    problems, warnings = versions.compare(ClusterVersions(command=None, trouble="Traceback ..."), url="URL")
    assert not problems and "did not finish (Traceback ...)" in warnings[0]


@pytest.mark.parametrize(("log", "found"), [
    ("/bin/sh: 1: hpsearch: not found\n", ClusterVersions(command=None, command_missing=True)),
    ("hpsearch 0.0.1\nusage: hpsearch [-h] [--version] COMMAND ...\nhpsearch: error: invalid choice\n",
     ClusterVersions(command="0.0.1", trouble="`hpsearch node-versions` failed: hpsearch: error: invalid choice")),
])
def test_the_probe_log_of_a_cluster_without_this_hpsearch(log, found):
    assert versions.read_probe_log(log) == found


# --------------------------------------------------------------------------- a real cluster, started late

class ClusterLater:
    """A cluster whose dashboard address is known before it starts: submit first, then start it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cluster: LocalCluster | None = None

    def start(self) -> LocalCluster:
        if self.cluster is None:
            self.cluster = start_cluster(dashboard_port=self.port)
        return self.cluster


@pytest.fixture(scope="module")
def cluster_later():
    later = ClusterLater()
    yield later
    if later.cluster is not None:
        later.cluster.shutdown()


@pytest.mark.e2e
def test_a_search_submitted_before_the_head_node_is_up_waits_for_it(cluster_later, tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    submit = subprocess.Popen(
        [HPSEARCH, "submit", "digits-quick", "--address", cluster_later.url, "--retry-for", "300",
         "--set", "search.num_samples=1", "--set", "train.epochs=1", "--tracking-uri", store],
        cwd=tmp_path, env=cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the submission has found nothing listening
        cluster_later.start()
        out, err = submit.communicate(timeout=300)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    assert submit.returncode == 0, out + err
    assert re.search(rf"^the cluster at {cluster_later.url} is not ready \(connection refused\); retrying for up "
                     rf"to 300 s$", err, re.MULTILINE), err
    assert "checking the cluster's hpsearch and Ray versions (--no-check skips it)" in err
    assert "warning" not in err, err  # the check ran on both nodes and found this machine's versions
    assert re.search(r"submitted search 'digits-quick' as Ray job raysubmit_\w+", out), out


def _fake_hpsearch(folder: Path, version: str) -> Path:
    """A real copy of this hpsearch, its version changed: what a node with another release imports."""
    shutil.copytree(REPO / "hpsearch", folder / "hpsearch", ignore=shutil.ignore_patterns("__pycache__"))
    init = folder / "hpsearch" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{OURS}"', f'__version__ = "{version}"'))
    return folder


@pytest.mark.e2e
def test_the_probe_reads_every_nodes_hpsearch_and_ray(cluster_later, tmp_path):
    cluster = cluster_later.start()
    client = jobs.connect(cluster.dashboard_url)
    all_nodes = {cluster.head_node_id, cluster.worker_node_id}

    ours = versions.probe(client)
    assert ours.command == OURS and not ours.trouble, ours
    assert {node.node_id for node in ours.nodes} == all_nodes, ours
    assert {(node.hpsearch, node.ray) for node in ours.nodes} == {(OURS, ray.__version__)}, ours
    assert versions.compare(ours, url=cluster.dashboard_url) == ([], [])

    # The job's command finds the copy through PYTHONPATH; the Ray workers import it from working_dir.
    fake = _fake_hpsearch(tmp_path / "other", "0.0.1")
    other = versions.probe(client, runtime_env={"working_dir": str(fake), "env_vars": {"PYTHONPATH": str(fake)}})
    assert other.command == "0.0.1" and {node.hpsearch for node in other.nodes} == {"0.0.1"}, other
    assert {node.node_id for node in other.nodes} == all_nodes, other
    problems, _ = versions.compare(other, url=cluster.dashboard_url)
    assert problems == [f"the cluster at {cluster.dashboard_url} runs hpsearch 0.0.1, this machine hpsearch {OURS}: "
                        f"install hpsearch=={OURS} (and its dependencies) on every node, in the Python environment "
                        f"`ray start` runs from, or use the docker/ images; or submit from a machine with "
                        f"hpsearch 0.0.1"]

    # `hpsearch jobs` lists searches, not these checks.
    listed = subprocess.run([HPSEARCH, "jobs", "--address", cluster.dashboard_url], env=cluster_env(),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "node-versions" not in listed.stdout, listed.stdout


@pytest.mark.e2e
def test_a_cluster_without_hpsearch_is_named_before_anything_is_submitted(cluster_later):
    bare_path = "/usr/bin:/bin"  # the job's shell, as on a node where hpsearch was never installed
    if shutil.which("hpsearch", path=bare_path):
        pytest.skip(f"hpsearch is installed system-wide ({shutil.which('hpsearch', path=bare_path)})")
    cluster = cluster_later.start()
    client = jobs.connect(cluster.dashboard_url)

    found = versions.probe(client, runtime_env={"env_vars": {"PATH": bare_path}})

    assert found == ClusterVersions(command=None, command_missing=True)
    with pytest.raises(versions.ClusterMismatch, match=rf"the cluster at {cluster.dashboard_url} has no hpsearch"):
        versions.check(client, url=cluster.dashboard_url, runtime_env={"env_vars": {"PATH": bare_path}})
