"""Names hpsearch writes into MLflow, shared by the tracking writer and the query layer.

Light on purpose: importing it loads neither Ray, torch nor MLflow.
"""
from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # in the working directory

ROLE = "hpsearch.role"  # "search" on a parent run; "trial", "replicate", "ablation" or "final" on a child run
REPLICATE_OF = "hpsearch.replicate_of"  # on a replicate run: the trial whose configuration it repeats
REPLICATE_SEED = "hpsearch.replicate_seed"  # on a replicate run: its training seed
ABLATION = "hpsearch.ablation"  # on an ablation run: the technique switched off ("none": everything on)
SEARCH_ID = "hpsearch.search_id"
SEARCH_NAME = "hpsearch.search_name"
TRIAL_ID = "hpsearch.trial_id"
STATUS = "hpsearch.status"  # search: running/completed/interrupted/failed; trial: TRIAL_STATUSES
EXPERIMENT_PATH = "hpsearch.experiment_path"
SPEC_DIR = "hpsearch.spec_dir"  # the spec file's folder: resume imports the search's plug-ins from there
METRIC = "hpsearch.metric"
OBJECTIVES = "hpsearch.objectives"  # on a parent run with several objectives: "val_accuracy:max,latency_ms:min"
CONSTRAINTS = "hpsearch.constraints"  # on a parent run with constraints: "params <= 200000; latency_ms <= 2.5"
INFEASIBLE = "hpsearch.infeasible"  # on an infeasible trial's run: the constraints it broke, with its values
MODE = "hpsearch.mode"
ALGORITHM = "hpsearch.algorithm"
PLANNED_TRIALS = "hpsearch.planned_trials"
NODE = "hpsearch.node"
PROCESS = "hpsearch.process"  # the trial process's pid on its node, as in Ray's worker-*.out log names
ERROR = "hpsearch.error"
HEARTBEAT = "hpsearch.heartbeat"  # on a running search's parent run: unix seconds of its driver's last sign of life
HEARTBEAT_EVERY_S = 30.0
# A "running" search whose driver has been silent this long is shown as interrupted: its driver died
# without a trace (killed, its machine lost). Long enough for a slow store or a long test evaluation.
SILENT_AFTER_S = 180.0
PARENT = "mlflow.parentRunId"
SPEC_ARTIFACT = "spec.yaml"
CHECKPOINT_ARTIFACT = "checkpoint"
TRIAL_STATUSES = ("running", "completed", "stopped_early", "diverged", "infeasible", "failed", "interrupted")
# MLflow's client sends these as HTTP basic auth to a tracking server started with --auth.
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def resolve_uri(tracking_uri: str | None = None) -> str:
    """An explicit URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def redact_uri(uri: str) -> str:
    """`uri` with the password of its user info (http://user:pass@host) replaced by ***, for output and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    username = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{username}:***@{host}"))


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user info, username, password): MLflow's client reads the last two from
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rpartition("@")[2]
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(netloc=host)), username, password


def credentials_to_environment(uri: str) -> str:
    """Move the user info of an http(s) URI into MLflow's credential variables; returns the URI without it."""
    if not uri.startswith(("http://", "https://")):
        return uri
    clean, username, password = split_credentials(uri)
    for name, value in zip(CREDENTIAL_VARIABLES, (username, password)):
        if value is not None:
            os.environ[name] = value
    return clean


def shown_status(status: str | None, *, heartbeat: str | float | None, started_s: float | None,
                 now_s: float) -> str:
    """A search's status as readers show it: "running" only while its driver's heartbeat (or, before the
    first beat, its start) is younger than SILENT_AFTER_S; after that "interrupted", as a driver that
    ended on its own would have marked it. `hpsearch resume` finishes such a search."""
    if status != "running":
        return status or "unknown"
    try:
        last = float(heartbeat) if heartbeat not in (None, "") else started_s
    except (TypeError, ValueError):
        last = started_s
    if last is None or last != last:  # nothing to go by
        return status
    return "interrupted" if now_s - last > SILENT_AFTER_S else status
