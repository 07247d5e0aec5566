"""Environment Ray reads at import time; imported before `ray` everywhere hpsearch uses it."""
from __future__ import annotations

import os

# Without this, Ray binds the machine's external address and all interfaces; Ray has no
# authentication, so a local search must stay on 127.0.0.1. A driver attached to a cluster
# (RAY_ADDRESS, which Ray Jobs also sets) must be reachable from the other nodes: the cluster's
# own setting holds there.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# Settings every trial process needs, passed to workers through the job's runtime_env.
WORKER_ENV = {
    # Trials read their data from the dataset spec, not from a working directory.
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # hpsearch tracks trials in MLflow; Tune's own CSV/JSON/TensorBoard files would be dead weight.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
# Checkpoints move between Tune's storage and MLflow without a progress bar per file.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# The driver prints hpsearch's own live view; Tune's tables would bury it.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Snapshot the experiment state often enough that a crash loses little of a search.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
os.environ.update({key: value for key, value in WORKER_ENV.items() if key not in os.environ})
