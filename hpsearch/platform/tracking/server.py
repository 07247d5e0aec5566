"""`hpsearch tracking-server`: an MLflow tracking server that every node of a cluster can write to.

Trials' runs and checkpoints go through it over HTTP (`--serve-artifacts`), so no node needs the
backend store's credentials or a path on the server's disk.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from dataclasses import dataclass

from hpsearch.platform.tracking.tags import redact_uri

SECRET_KEY_VARIABLE = "MLFLOW_FLASK_SERVER_SECRET_KEY"
JOB_EXECUTION_VARIABLE = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    backend_store_uri: str
    artifacts_destination: str
    auth: bool = False  # MLflow's basic-auth app: users and passwords, in its own database
    allowed_hosts: str | None = None  # Host headers MLflow accepts; None: localhost and private IPs
    workers: int | None = None  # server processes; None: MLflow's default (4)

    def command(self) -> list[str]:
        """`mlflow server ...`, run by this interpreter so that it is the same MLflow as hpsearch's."""
        command = [sys.executable, "-m", "mlflow", "server", "--host", self.host, "--port", str(self.port),
                   "--backend-store-uri", self.backend_store_uri,
                   "--artifacts-destination", self.artifacts_destination, "--serve-artifacts"]
        if self.auth:
            command += ["--app-name", "basic-auth"]
        if self.allowed_hosts:
            command += ["--allowed-hosts", self.allowed_hosts]
        if self.workers:
            command += ["--workers", str(self.workers)]
        return command

    def describe(self) -> list[str]:
        """What the server is about to do, for the user; the store's password is not shown."""
        shown_host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        lines = [f"MLflow tracking server on http://{self.host}:{self.port}"
                 f"{' (all interfaces)' if self.host in ('0.0.0.0', '::') else ''}",
                 f"  runs in {redact_uri(self.backend_store_uri)}",
                 f"  artifacts in {self.artifacts_destination}, served to clients through the server",
                 f"  searches: hpsearch run SPEC --tracking-uri http://{shown_host}:{self.port}"]
        if self.auth:
            lines.append("  basic auth on: clients set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        return lines

    def warnings(self) -> list[str]:
        if is_loopback(self.host):
            return []
        if self.auth:
            return [f"warning: listening on {self.host}, beyond this machine: runs need a login, but passwords "
                    f"travel as plain HTTP; put TLS in front of port {self.port} outside a trusted network"]
        return [f"warning: listening on {self.host}, beyond this machine: anyone who can reach port {self.port} "
                f"can read and change every run; add --auth, or keep the port behind a firewall"]


def unreachable(tracking_uri: str, *, timeout_s: float = 5.0) -> str | None:
    """Why no tracking server answers at an http(s) `tracking_uri` (refused, no such host, no answer
    within `timeout_s`), as one line; None when one answers, whatever it says (a login it wants, a path
    it does not serve), and for every other kind of store. MLflow's client retries a server that does
    not answer for minutes; this asks once."""
    import urllib.error
    import urllib.request

    from hpsearch.platform.tracking.tags import split_credentials

    if not tracking_uri.startswith(("http://", "https://")):
        return None
    base = split_credentials(tracking_uri)[0].rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(reason, socket.gaierror):
            reason = "unknown host"
        elif isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {timeout_s:g} s"
        return (f"no MLflow tracking server answers at {redact_uri(tracking_uri)} ({reason}); start it "
                f"(hpsearch tracking-server), or pass another --tracking-uri")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve(settings: ServerSettings) -> int:
    """Replace this process with `mlflow server`: signals reach it directly, its exit status is ours."""
    for line in settings.describe():
        print(line, flush=True)
    for line in settings.warnings():
        print(line, file=sys.stderr, flush=True)
    if "://" not in settings.artifacts_destination:
        os.makedirs(settings.artifacts_destination, exist_ok=True)
    if settings.auth and not os.environ.get(SECRET_KEY_VARIABLE):
        # The login pages' CSRF protection needs one key shared by the server's workers.
        os.environ[SECRET_KEY_VARIABLE] = secrets.token_hex(32)
        print(f"  {SECRET_KEY_VARIABLE} is not set: a random key for this run (logins in the web UI "
              f"end when the server restarts)", flush=True)
    # MLflow's job runner serves its GenAI features (LLM judges, trace roll-ups), which hpsearch does
    # not use: seven more processes, each importing MLflow as the server starts. Set the variable to
    # true to have them.
    os.environ.setdefault(JOB_EXECUTION_VARIABLE, "false")
    command = settings.command()
    os.execv(command[0], command)
    return 0  # not reached
