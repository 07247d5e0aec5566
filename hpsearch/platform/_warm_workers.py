"""A local search's first trials start in worker processes Ray started along with itself.

As a local Ray session comes up, Ray starts one idle worker process per CPU. Given
`preload_python_modules`, those processes import torch, Ray Tune and hpsearch's training code
while the driver is still opening the tracking store and building the Tuner, so the first trials
find a process ready instead of each starting one and importing everything then.

A Tune trial actor only takes such a process if it asks for the session's runtime_env, which is
none. Tune registers its trainable with `runtime_env={"env_vars": ...}` (`PL_DISABLE_FORK` and
variables copied from the driver's environment): with that, every trial actor would start a
process of its own. The processes of a local session inherit the driver's environment anyway, so
`init_ray` exports those variables before Ray starts, and the trainable is registered without a
runtime_env when every variable Tune would send is in the environment the session inherited. On
a cluster, whose other nodes never see the driver's environment, Tune's registration stands.
"""
from __future__ import annotations

import os
from typing import Mapping

# What a trial process imports before its first trial: torch, Ray Tune and hpsearch's trainables
# (all through hpsearch.platform.trial), and torch._dynamo, which torch.optim loads on its first step.
PRELOADED_MODULES = ("hpsearch.platform.trial", "torch._dynamo")

_session: tuple[str, dict[str, str]] | None = None  # (GCS address, Tune's variables its processes inherited)


def local_init_options(worker_env: Mapping[str, str]) -> dict:
    """Exports `worker_env`, and what Tune adds to every trial's, for the processes of a local
    session; returns ray.init's extra options."""
    os.environ.update(worker_env)
    os.environ.update({key: value for key, value in _tune_env_vars().items() if key not in os.environ})
    return {"_system_config": {"preload_python_modules": list(PRELOADED_MODULES)}}


def started_local_session() -> None:
    """Called once ray.init has started a local session: trial actors may share its processes."""
    import ray

    global _session
    _session = (ray.get_runtime_context().gcs_address, _tune_env_vars())
    _register_trainables_without_runtime_env()


def _tune_env_vars() -> dict[str, str]:
    """The env_vars Tune gives a trainable's runtime_env (ray.tune.execution.class_cache.get)."""
    from ray.tune.execution import class_cache

    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", ())
    return {**getattr(class_cache, "DEFAULT_ENV_VARS", {}),
            **{key: os.environ[key] for key in propagated if key in os.environ}}


def _inherited() -> bool:
    """Whether this is hpsearch's local session, and Tune would send what its processes inherited."""
    import ray

    if _session is None or not ray.is_initialized() or ray.get_runtime_context().gcs_address != _session[0]:
        return False
    return _tune_env_vars() == _session[1]


def _register_trainables_without_runtime_env() -> None:
    """Patch Tune's actor class cache once; a Ray without it is left as it is."""
    from ray.tune.execution import class_cache

    cache = getattr(class_cache, "_ActorClassCache", None)
    original = getattr(cache, "get", None)
    if original is None or getattr(original, "_hpsearch", False):
        return

    def get(self, trainable_cls):
        if trainable_cls not in self._cache and _inherited():
            import ray

            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return original(self, trainable_cls)

    get._hpsearch = True
    cache.get = get
