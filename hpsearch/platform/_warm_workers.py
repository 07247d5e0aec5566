"""A local search's first trials start in worker processes Ray started along with itself.

What this relies on in Ray is private and lives in `_ray_internals` (see its docstring): the
processes' preloaded modules, and Tune's trial actors registered without a runtime_env so that they
can take those processes. Here is only hpsearch's side: which modules, and when a session counts as
hpsearch's own local one. On a cluster, whose other nodes never see the driver's environment, Tune's
registration stands.
"""
from __future__ import annotations

import os
from typing import Mapping

from hpsearch.platform import _ray_internals

# What a trial process imports before its first trial: torch, Ray Tune and hpsearch's trainables
# (all through hpsearch.platform.trial), and torch._dynamo, which torch.optim loads on its first step.
PRELOADED_MODULES = ("hpsearch.platform.trial", "torch._dynamo")

_session: tuple[str, dict[str, str]] | None = None  # (GCS address, Tune's variables its processes inherited)


def local_init_options(worker_env: Mapping[str, str]) -> dict:
    """Exports `worker_env`, and what Tune adds to every trial's, for the processes of a local
    session; returns ray.init's extra options."""
    os.environ.update(worker_env)
    os.environ.update({key: value for key, value in _ray_internals.tune_env_vars().items() if key not in os.environ})
    return _ray_internals.preload_options(PRELOADED_MODULES)


def started_local_session() -> None:
    """Called once ray.init has started a local session: trial actors may share its processes."""
    import ray

    global _session
    _session = (ray.get_runtime_context().gcs_address, _ray_internals.tune_env_vars())
    _ray_internals.register_trainables_without_runtime_env(_inherited)


def _inherited() -> bool:
    """Whether this is hpsearch's local session, and Tune would send what its processes inherited."""
    import ray

    if _session is None or not ray.is_initialized() or ray.get_runtime_context().gcs_address != _session[0]:
        return False
    return _ray_internals.tune_env_vars() == _session[1]
