"""Searches as Ray Jobs: a spec goes to a cluster's Jobs API, where `hpsearch run` drives it.

The job's driver is an ordinary `hpsearch run` on the head node (Ray Jobs sets RAY_ADDRESS, so it
attaches to the cluster), so a submitted search behaves as a search run on the head node by hand.
This module packages the spec, and lists, follows and stops jobs.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hpsearch.platform.cluster.retry import DEFAULT_RETRY_FOR_S, Patience, RetryingClient
from hpsearch.platform.cluster.versions import PROBE_METADATA
from hpsearch.platform.tracking.tags import CREDENTIAL_VARIABLES, DEFAULT_TRACKING_URI, redact_uri, split_credentials

# `hpsearch submit --wait` and `hpsearch logs --follow` end with the job's outcome.
EXIT_STATUS = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}
TERMINAL = frozenset(EXIT_STATUS)
if TYPE_CHECKING:
    from hpsearch.search_spaces.spec import Spec

# `hpsearch stop` as Ctrl-C: Tune stops the trials, hpsearch marks them interrupted, and the search
# can be resumed; Ray's default, SIGTERM, would end the driver before it closes its MLflow runs.
STOP_SETTINGS = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}
LOCAL_SCHEMES = ("sqlite", "file", "")  # stores on the disk of whichever machine runs the driver


class JobNotFound(LookupError):
    """The cluster has no job with this id."""


ACTIONS = ("finalize", "replicate")  # `hpsearch submit ACTION SEARCH`: a finished search's next step, as a job


@dataclass(frozen=True)
class Submission:
    """What goes to the Jobs API: nothing in it carries a password (`ray job list` shows the entrypoint)."""

    spec: Spec | None  # None for an action on a search that ran already
    entrypoint: str
    runtime_env: dict[str, Any]
    tracking_uri: str | None  # as the job will use it, without credentials; None: the cluster's default
    notes: tuple[str, ...] = ()  # things the user should know before the job runs
    title: str = ""  # for the first line of output: "search 'digits-quick'", "finalize of search 'x'"
    metadata: dict[str, str] | None = None


def dashboard_url(address: str) -> str:
    """The Jobs API's URL: a bare HOST:PORT is taken as http (Ray's dashboard serves the API there)."""
    if "://" not in address:
        return f"http://{address}"
    scheme = address.split("://", 1)[0]
    if scheme not in ("http", "https"):
        raise ValueError(f"--address: {address!r} is not the Ray dashboard's URL; jobs go to the dashboard, "
                         f"e.g. http://HEAD:8265 (not the GCS port 6379 or a ray:// client address)")
    return address.rstrip("/")


def prepare_submission(source: str, *, overrides: list[str] | tuple[str, ...] = (), tracking_uri: str | None = None,
                       storage: str | None = None) -> Submission:
    """Validate the spec here (SpecError: nothing is submitted) and build the job that runs it."""
    from hpsearch.search_spaces.spec import load_spec  # torch comes with it: not for `jobs`, `logs`, `stop`

    spec = load_spec(source, overrides=overrides, tracking_uri=tracking_uri, remote=True)
    runtime_env: dict[str, Any] = {"env_vars": dict(STOP_SETTINGS)}
    path = Path(source)
    notes: list[str] = []
    if spec.dataset.root and spec.dataset.is_image_source and not Path(spec.dataset.root).exists():
        notes.append(f"note: dataset.root {spec.dataset.root} is not on this machine; the job reads and checks it "
                     f"on the cluster's nodes")
    if path.is_file():  # the spec's folder travels with it: files it names by relative path come along
        runtime_env["working_dir"] = str(path.resolve().parent)
        runtime_env.update(_plugin_packages(spec, path.resolve().parent))
    # A built-in spec goes by name: it is installed with hpsearch on every node.
    command = ["hpsearch", "run", path.name if path.is_file() else source]
    command += [argument for override in overrides for argument in ("--set", override)]
    if spec.dataset.root and path.is_file():
        # The nodes read the data where they share it; a folder beside the spec is not uploaded with it.
        command += ["--set", f"dataset.root={spec.dataset.root}"]
        inside = _relative_inside(Path(spec.dataset.root), path.resolve().parent)
        if inside not in (None, "."):
            runtime_env["excludes"] = [f"/{inside}"]
            notes.append(f"note: dataset.root {spec.dataset.root} is inside the spec's folder; it is not uploaded "
                         f"with the job, so every node must see it at that path (docs/cluster.md: placing data)")
    uri = tracking_uri or spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    clean_uri, login = _without_login(uri) if uri else (None, {})
    if clean_uri:
        command += ["--tracking-uri", clean_uri]
    runtime_env["env_vars"].update(login)
    if storage:
        command += ["--storage", storage]
    return Submission(spec=spec, entrypoint=shlex.join(command), runtime_env=runtime_env, tracking_uri=clean_uri,
                      notes=tuple(notes) + _notes(clean_uri, login), title=f"search {spec.name!r}",
                      metadata={"hpsearch_spec": spec.name})


def prepare_action(action: str, search: str, *, options: list[str] | tuple[str, ...] = (),
                   tracking_uri: str | None = None) -> Submission:
    """`hpsearch ACTION SEARCH OPTIONS` as a job: finalize or replicate a search that ran already. The
    job's driver runs on the head node, so it reads the data and the store as the search's nodes did."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not one of {list(ACTIONS)}")
    command = ["hpsearch", action, search, *options]
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    clean_uri, login = _without_login(uri) if uri else (None, {})
    if clean_uri:
        command += ["--tracking-uri", clean_uri]
    return Submission(spec=None, entrypoint=shlex.join(command),
                      runtime_env={"env_vars": {**STOP_SETTINGS, **login}}, tracking_uri=clean_uri,
                      notes=_notes(clean_uri, login), title=f"{action} of search {search!r}",
                      metadata={"hpsearch_action": action, "hpsearch_search": search})


def _plugin_packages(spec: "Spec", folder: Path) -> dict[str, Any]:
    """`py_modules` for the packages a spec lists under `plugins` outside its own folder (which
    travels as the working directory); a plain folder or module outside it cannot travel."""
    from hpsearch.search_spaces.spec import SpecError

    packages = []
    for entry in spec.plugins:
        target = (folder / Path(entry).expanduser()).resolve()
        if _relative_inside(target, folder) is not None:
            continue
        if not (target / "__init__.py").is_file():
            raise SpecError([f"plugins: {entry!r} is outside the spec's folder and is not a package (a folder "
                             f"with __init__.py); submit ships the spec's folder and packages: move it beside "
                             f"the spec, or make it a package"])
        packages.append(str(target))
    return {"py_modules": packages} if packages else {}


def _relative_inside(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return None


def _without_login(uri: str) -> tuple[str, dict[str, str]]:
    """The URI without user info, and the MLflow login for an http(s) server: the URI's, else this shell's."""
    clean_uri, username, password = split_credentials(uri)
    if not clean_uri.startswith(("http://", "https://")):
        return clean_uri, {}
    login = {name: value if value is not None else os.environ.get(name)
             for name, value in zip(CREDENTIAL_VARIABLES, (username, password))}
    return clean_uri, {name: value for name, value in login.items() if value is not None}


def _notes(clean_uri: str | None, login: dict[str, str]) -> tuple[str, ...]:
    notes = []
    if login:
        notes.append("note: the MLflow login travels in the job's runtime_env, which `ray job list`, the "
                     "Ray dashboard and Ray's logs show; to keep it off the cluster, set "
                     "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD on the nodes before `ray start` "
                     "and submit a URI without a login, from a shell without them")
    job_uri = clean_uri or DEFAULT_TRACKING_URI
    scheme = job_uri.split("://", 1)[0].split("+", 1)[0] if "://" in job_uri else ""
    if scheme in LOCAL_SCHEMES:
        notes.append(f"note: the search tracks to {job_uri} on the cluster's head node "
                     f"(in the job's working directory unless the path is absolute), not on this machine; "
                     f"--tracking-uri http://HOST:5000 sends it to `hpsearch tracking-server`")
    return tuple(notes)


def connect(address: str, *, retry_for_s: float = DEFAULT_RETRY_FOR_S) -> RetryingClient:
    """A Jobs API client for the cluster whose dashboard is at `address`, patient with one that is starting."""
    return RetryingClient(Patience(dashboard_url(address), retry_for_s=retry_for_s))


def submit(client, submission: Submission) -> str:
    return client.submit_job(entrypoint=submission.entrypoint, runtime_env=submission.runtime_env,
                             metadata=dict(submission.metadata or {}))


def job_info(client, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as error:
        if "404" in str(error) or "does not exist" in str(error):
            raise JobNotFound(f"no job {job_id!r} on the cluster at {client.get_address()}; "
                              f"`hpsearch jobs --address {client.get_address()}` lists them") from None
        raise


def follow(client, job_id: str, *, out: TextIO = sys.stdout, poll_s: float = 1.0) -> str:
    """Copy the job's log to `out` as it grows, until the job ends; returns its final status."""
    job_info(client, job_id)  # JobNotFound before anything else
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed ..."
    printed = 0

    async def tail() -> None:
        nonlocal printed
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            printed += len(chunk)

    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001  (the stream broke: polling below picks up where it stopped)
        pass
    while True:
        status = _status(job_info(client, job_id))
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def stop(client, job_id: str, *, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Ask the job to stop and wait for it to end: (whether it was running, its final status)."""
    status = _status(job_info(client, job_id))
    if status in TERMINAL:
        return False, status
    client.stop_job(job_id)
    deadline = time.monotonic() + timeout_s
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _status(job_info(client, job_id))
    return True, status


def job_table(client) -> str:
    """One line per job, oldest first: id, status, entrypoint (shortened), start and end; without the
    version checks `hpsearch submit` runs first."""
    jobs = sorted((job for job in client.list_jobs() if not _is_probe(job)), key=lambda job: job.start_time or 0)
    rows = [("id", "status", "entrypoint", "start", "end")]
    for job in jobs:
        rows.append((job.submission_id or job.job_id or "?", _status(job), _short(job.entrypoint or "", 60),
                     _time(job.start_time), _time(job.end_time)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows)


def describe_submission(job_id: str, *, address: str, submission: Submission) -> list[str]:
    url = dashboard_url(address)
    lines = [f"submitted {submission.title} as Ray job {job_id}",
             f"  runs: {submission.entrypoint}"]
    if submission.tracking_uri:
        lines.append(f"  tracking in {redact_uri(submission.tracking_uri)}")
    lines += [f"  Ray dashboard: {url}/#/jobs/{job_id}",
              f"  follow it:     hpsearch logs {job_id} --follow --address {url}",
              f"  stop it:       hpsearch stop {job_id} --address {url}"]
    return lines


def _is_probe(job) -> bool:
    metadata = job.metadata or {}
    return all(metadata.get(key) == value for key, value in PROBE_METADATA.items())


def _status(job) -> str:
    return getattr(job.status, "value", str(job.status))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _time(milliseconds: int | None) -> str:
    if not milliseconds:
        return "-"
    return datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S")
