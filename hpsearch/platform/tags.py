"""Names hpsearch writes into MLflow, shared by the tracking writer and the query layer.

Light on purpose: importing it loads neither Ray, torch nor MLflow.
"""
from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # in the working directory

ROLE = "hpsearch.role"  # "search" on a parent run, "trial" on a child run
SEARCH_ID = "hpsearch.search_id"
SEARCH_NAME = "hpsearch.search_name"
TRIAL_ID = "hpsearch.trial_id"
STATUS = "hpsearch.status"  # search: running/completed/interrupted/failed; trial: TRIAL_STATUSES
EXPERIMENT_PATH = "hpsearch.experiment_path"
METRIC = "hpsearch.metric"
MODE = "hpsearch.mode"
ALGORITHM = "hpsearch.algorithm"
PLANNED_TRIALS = "hpsearch.planned_trials"
NODE = "hpsearch.node"
ERROR = "hpsearch.error"
PARENT = "mlflow.parentRunId"
SPEC_ARTIFACT = "spec.yaml"
CHECKPOINT_ARTIFACT = "checkpoint"
TRIAL_STATUSES = ("running", "completed", "stopped_early", "diverged", "failed", "interrupted")


def resolve_uri(tracking_uri: str | None = None) -> str:
    """An explicit URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
