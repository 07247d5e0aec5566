"""Before a search is submitted: does every node of the cluster have this machine's hpsearch and Ray?

A job runs the `hpsearch` command on the head node and its trials import hpsearch on every node;
a node without it fails the job with `/bin/sh: 1: hpsearch: not found` or ModuleNotFoundError,
and another version may read the spec differently. So `hpsearch submit` first runs a short job,
PROBE_ENTRYPOINT: the head node's `hpsearch --version`, then `hpsearch node-versions`, which runs
one task pinned to each alive node (no CPU asked, so it never waits for trials to finish) and
prints what each node's Ray workers import.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from hpsearch.platform.errors import first_line

PROBE_ENTRYPOINT = "hpsearch --version && hpsearch node-versions --json"
PROBE_TIMEOUT_S = 60.0
NODE_TIMEOUT_S = 20.0  # a node's first worker process starts in a few seconds, even on a busy node
JSON_MARK = "hpsearch node versions: "
PROBE_METADATA = {"hpsearch_probe": "versions"}  # `hpsearch jobs` leaves these jobs out
_COMMAND_VERSION = re.compile(r"^hpsearch (\S+)\s*$", re.MULTILINE)
_NOT_FOUND = re.compile(r"hpsearch: (command )?not found|exit code 127")


class ClusterMismatch(Exception):
    """The cluster's hpsearch or Ray is not this machine's: one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class NodeVersions:
    node_id: str
    address: str
    hpsearch: str | None = None  # None: not installed there
    ray: str | None = None
    python: str | None = None
    error: str | None = None  # the node did not answer: nothing above is known

    @property
    def name(self) -> str:
        return f"{self.address} (node {self.node_id[:8]})"


@dataclass(frozen=True)
class ClusterVersions:
    """What the probe job found."""

    command: str | None  # `hpsearch --version` on the head node; None: missing or not known
    command_missing: bool = False  # the head node's shell found no `hpsearch`
    nodes: tuple[NodeVersions, ...] = ()
    trouble: str | None = None  # why the check could not finish


# --------------------------------------------------------------------------- on this machine

def probe(client, *, runtime_env: dict[str, Any] | None = None, timeout_s: float = PROBE_TIMEOUT_S,
          poll_s: float = 0.25) -> ClusterVersions:
    """Run the probe job on the cluster behind `client` (a RetryingClient) and read its log."""
    job_id = client.submit_job(entrypoint=PROBE_ENTRYPOINT, runtime_env=runtime_env or {},
                               metadata=dict(PROBE_METADATA))
    deadline = time.monotonic() + timeout_s
    info = client.get_job_info(job_id)
    while _status(info) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            return ClusterVersions(command=None, trouble=f"job {job_id} did not finish within {timeout_s:g} s")
        time.sleep(poll_s)
        info = client.get_job_info(job_id)
    # Kept: Ray's list of jobs would show a deleted job's driver as "Entrypoint not found." instead.
    return read_probe_log(client.get_job_logs(job_id), message=info.message or "")


def read_probe_log(log: str, *, message: str = "") -> ClusterVersions:
    command = _COMMAND_VERSION.search(log)
    if command is None:
        if _NOT_FOUND.search(log) or _NOT_FOUND.search(message):
            return ClusterVersions(command=None, command_missing=True)
        return ClusterVersions(command=None, trouble=_last_line(log) or _last_line(message) or "no output")
    for line in reversed(log.splitlines()):
        if line.startswith(JSON_MARK):
            nodes = tuple(NodeVersions(**row) for row in json.loads(line[len(JSON_MARK):]))
            return ClusterVersions(command=command.group(1), nodes=nodes)
    return ClusterVersions(command=command.group(1), trouble=f"`hpsearch node-versions` failed: {_last_line(log)}")


def compare(found: ClusterVersions, *, url: str, local_hpsearch: str | None = None,
            local_ray: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings): a problem stops the submission; a warning is printed and the search goes."""
    import ray

    import hpsearch

    local_hpsearch = local_hpsearch or hpsearch.__version__
    local_ray = local_ray or ray.__version__
    install = (f"install hpsearch=={local_hpsearch} (and its dependencies) on every node, in the Python "
               f"environment `ray start` runs from, or use the docker/ images")
    if found.command_missing:
        return [f"the cluster at {url} has no hpsearch (its head node's shell: `hpsearch: not found`): "
                f"{install}"], []
    problems, warnings = [], []
    places = ([("the head node's `hpsearch` command", found.command)] if found.command else [])
    answered = [node for node in found.nodes if node.error is None]
    places += [(node.name, node.hpsearch) for node in answered]
    differing = [(place, version) for place, version in places if version != local_hpsearch]
    other_versions = {version for _, version in differing}
    if differing and len(differing) == len(places) and len(other_versions) == 1:  # the whole cluster
        version = other_versions.pop()
        problems.append(f"the cluster at {url} has no hpsearch: {install}" if version is None else
                        f"the cluster at {url} runs hpsearch {version}, this machine hpsearch {local_hpsearch}: "
                        f"{install}; or submit from a machine with hpsearch {version}")
    elif differing:
        by_version: dict[str | None, list[str]] = {}
        for place, version in differing:
            by_version.setdefault(version, []).append(place)
        listing = "; ".join(f"{'no hpsearch' if version is None else f'hpsearch {version}'} on {', '.join(names)}"
                            for version, names in by_version.items())
        problems.append(f"nodes of the cluster at {url} differ from this machine's hpsearch {local_hpsearch}: "
                        f"{listing}; every node needs the same version: {install}")
    cluster_rays = sorted({node.ray for node in answered if node.ray} - {local_ray})
    if cluster_rays:
        theirs = " and ".join(cluster_rays)
        problems.append(f"this machine has Ray {local_ray}, the cluster at {url} Ray {theirs}: a Ray client must "
                        f"match its cluster's Ray; install ray[default]=={cluster_rays[0]} here, or run Ray "
                        f"{local_ray} on the cluster")
    silent = [node for node in found.nodes if node.error is not None]
    if silent:
        warnings.append(f"warning: the version check got no answer from {', '.join(node.name for node in silent)} "
                        f"({silent[0].error}); submitting anyway")
    if found.trouble:
        warnings.append(f"warning: the version check on the cluster at {url} did not finish ({found.trouble}); "
                        f"submitting anyway (--no-check skips the check)")
    return problems, warnings


def check(client, *, url: str, runtime_env: dict[str, Any] | None = None) -> list[str]:
    """Probe the cluster and compare: ClusterMismatch, or the warnings to print."""
    problems, warnings = compare(probe(client, runtime_env=runtime_env), url=url)
    if problems:
        raise ClusterMismatch(problems)
    return warnings


def _status(info) -> str:
    return getattr(info.status, "value", str(info.status))


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- on the cluster

def node_versions(*, address: str | None = None, timeout_s: float = NODE_TIMEOUT_S) -> list[dict[str, Any]]:
    """Each alive node's versions, as its Ray workers see them; runs on a node of the cluster."""
    # Before Ray is imported: with an address, _ray_env leaves the cluster's own network settings alone.
    os.environ["RAY_ADDRESS"] = address or os.environ.get("RAY_ADDRESS") or "auto"
    from hpsearch.platform import _ray_env  # noqa: F401  (before ray)

    import ray
    from ray import cloudpickle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(logging_level=logging.WARNING, log_to_driver=False)
    # By value: a node without hpsearch can still run the task and say so.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    versions_here = ray.remote(num_cpus=0, max_retries=0)(_versions_here)
    nodes = sorted((node for node in ray.nodes() if node["Alive"]), key=lambda node: node["NodeManagerAddress"])
    pending = {versions_here.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
               .remote(): node for node in nodes}
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    rows = []
    for ref, node in pending.items():
        row: dict[str, Any] = {"node_id": node["NodeID"], "address": node["NodeManagerAddress"]}
        try:
            row.update(ray.get(ref) if ref in ready else {"error": f"no answer within {timeout_s:g} s"})
        except Exception as error:  # noqa: BLE001  (reported for that node)
            row["error"] = first_line(error)
        rows.append(row)
    return rows


def _versions_here() -> dict[str, str | None]:
    import sys

    import ray

    try:
        import hpsearch
    except ImportError:
        return {"hpsearch": None, "ray": ray.__version__, "python": sys.version.split()[0]}
    return {"hpsearch": getattr(hpsearch, "__version__", "unknown"), "ray": ray.__version__,
            "python": sys.version.split()[0]}


def node_table(rows: list[dict[str, Any]]) -> str:
    header = ("node", "address", "hpsearch", "ray", "python")
    table = [header] + [(row["node_id"][:8], row["address"], row.get("hpsearch") or "-", row.get("ray") or "-",
                         row.get("python") or row.get("error") or "-") for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in table)
