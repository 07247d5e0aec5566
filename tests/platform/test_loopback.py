"""A local search's Ray must listen on 127.0.0.1 only: Ray has no authentication of its own."""
from __future__ import annotations

import ipaddress

import psutil
import pytest

pytestmark = pytest.mark.e2e


def _ray_processes():
    me = psutil.Process()
    names = ("raylet", "gcs_server", "ray::", "default_worker", "dashboard", "log_monitor", "runtime_env_agent")
    for process in psutil.process_iter(["name", "cmdline", "pid"]):
        text = " ".join(process.info["cmdline"] or [process.info["name"] or ""])
        if process.pid != me.pid and any(name in text for name in names):
            yield process


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback


def test_local_ray_listens_on_loopback_only(ray_session):
    listening = []
    for process in _ray_processes():
        try:
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(process.info["name"], c.laddr.ip, c.laddr.port) for c in connections
                      if c.status == psutil.CONN_LISTEN]
    assert listening, "found no listening Ray process: the check would pass vacuously"
    exposed = [entry for entry in listening if not _is_loopback(entry[1])]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
