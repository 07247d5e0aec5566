"""Everything hpsearch writes to MLflow, and the names it writes under.

- `runs`: a search's parent run (created, reopened, finished, found again);
- `writer`: the trial runs, written by a Tune callback on a background thread;
- `artifacts`: checkpoints, the test evaluation, lr range tests;
- `index`: the snapshot of a search's trial runs that readers of large searches start from;
- `store`: SQLite stores made from a migrated template; `server`: `hpsearch tracking-server`;
- `tags`: the tag names, tracking URIs and credentials (imports neither Ray, torch nor MLflow).
"""
from __future__ import annotations

import importlib

# Importing the package loads nothing: `tags` is imported by light readers (the dashboard, `hpsearch
# list`) that must not pay for Ray and MLflow; the writing side is loaded on first use of its names.
_HOMES = {
    "artifacts": ("log_checkpoint", "log_lr_find", "log_test_evaluation"),
    "runs": ("Heartbeat", "TrackingUnavailable", "client_for", "experiment_id_for", "find_search_run", "finish_search_run",
             "git_commit", "mark_interrupted", "recorded_data", "reopen_search_run", "start_search_run",
             "write_final_snapshot"),
    "tags": ("CHECKPOINT_ARTIFACT", "SPEC_ARTIFACT"),
    "writer": ("TrackingGuard", "TrialTracker", "divergence_reason", "is_transient", "node_label"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME_OF[name]}"), name)


__all__ = [
    "Heartbeat", "CHECKPOINT_ARTIFACT", "SPEC_ARTIFACT", "TrackingGuard", "TrackingUnavailable", "TrialTracker", "client_for",
    "divergence_reason", "experiment_id_for", "find_search_run", "finish_search_run", "git_commit", "is_transient",
    "log_checkpoint", "log_lr_find", "log_test_evaluation", "mark_interrupted", "node_label", "recorded_data", "reopen_search_run",
    "start_search_run", "write_final_snapshot",
]
