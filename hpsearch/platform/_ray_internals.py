"""Every use of Ray's private internals, in one place, applied only on the Ray versions they were
verified with (VERIFIED_RAY). On any other Ray, hpsearch runs Tune exactly as Tune runs itself: searches
are as correct, only slower to start. tests/platform/test_ray_internals.py fails loudly when the
installed Ray is not in VERIFIED_RAY, or when anything named in `missing()` is gone.

Two things are patched, both about how fast trials start on few cores:

1. Warm worker processes. As a local Ray session comes up, Ray starts one idle worker process per
   CPU; given `_system_config={"preload_python_modules": [...]}` those import torch, Ray Tune and
   hpsearch's training code while the driver is still opening the tracking store. A Tune trial actor
   only takes such a process if it asks for the session's runtime_env, which is none, but Tune
   registers its trainable with `runtime_env={"env_vars": ...}` (`PL_DISABLE_FORK` and variables
   copied from the driver). The processes of a local session inherit the driver's environment, so
   those variables are exported before Ray starts, and Tune's actor class cache
   (`class_cache._ActorClassCache.get`) registers the trainable without a runtime_env when every
   variable Tune would send is in what the session's processes inherited.

2. Actor reuse with short trials. With `reuse_actors`, Tune hands a finished trial's actor to the
   next trial and kills the actor that trial already had starting. A new trial process takes seconds
   to start: if trials are shorter, every actor started beside the one live actor is killed before
   its first trial, and `max_concurrent: 2` runs one trial at a time. The patched
   `TuneController._maybe_reuse_cached_actor` lets a trial whose own actor has its resources and is
   starting wait for it.
"""
from __future__ import annotations

import inspect
import os
from typing import Callable

VERIFIED_RAY = ("2.60.0",)  # Ray versions these patches were read against and tested with


def ray_version() -> str:
    import ray

    return ray.__version__


def verified() -> bool:
    """Whether the installed Ray is one these patches were verified with."""
    return ray_version() in VERIFIED_RAY


def missing() -> list[str]:
    """What the patches rely on that the installed Ray lacks (empty on a verified Ray)."""
    from ray.tune.execution import class_cache, tune_controller
    from ray.air.execution._internal import actor_manager

    problems = []
    controller = tune_controller.TuneController
    if not callable(getattr(controller, "_maybe_reuse_cached_actor", None)):
        problems.append("TuneController._maybe_reuse_cached_actor")
    for attribute in ("_trial_to_actor", "_resetting_trials", "_actor_manager"):
        if f"self.{attribute}" not in inspect.getsource(controller.__init__):
            problems.append(f"TuneController.{attribute}")
    if "self._live_actors_to_ray_actors_resources" not in inspect.getsource(actor_manager.RayActorManager.__init__):
        problems.append("RayActorManager._live_actors_to_ray_actors_resources")
    cache = getattr(class_cache, "_ActorClassCache", None)
    if cache is None or not callable(getattr(cache, "get", None)):
        problems.append("class_cache._ActorClassCache.get")
    elif "self._cache" not in inspect.getsource(cache):
        problems.append("_ActorClassCache._cache")
    for name in ("DEFAULT_ENV_VARS", "ENV_VARS_TO_PROPAGATE"):
        if not hasattr(class_cache, name):
            problems.append(f"class_cache.{name}")
    return problems


def preload_options(modules: tuple[str, ...]) -> dict:
    """ray.init's private option that has the first worker processes import `modules`."""
    if not verified():
        return {}
    return {"_system_config": {"preload_python_modules": list(modules)}}


def tune_env_vars() -> dict[str, str]:
    """The env_vars Tune gives a trainable's runtime_env (ray.tune.execution.class_cache.get)."""
    from ray.tune.execution import class_cache

    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", ())
    return {**getattr(class_cache, "DEFAULT_ENV_VARS", {}),
            **{key: os.environ[key] for key in propagated if key in os.environ}}


def register_trainables_without_runtime_env(inherited: Callable[[], bool]) -> None:
    """Patch Tune's actor class cache once: while `inherited()` holds, a trainable's actor class
    asks for no runtime_env of its own."""
    if not verified():
        return
    from ray.tune.execution import class_cache

    cache = class_cache._ActorClassCache
    original = cache.get
    if getattr(original, "_hpsearch", False):
        return

    def get(self, trainable_cls):
        if trainable_cls not in self._cache and inherited():
            import ray

            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return original(self, trainable_cls)

    get._hpsearch = True
    cache.get = get


def keep_starting_actors() -> None:
    """Patch TuneController._maybe_reuse_cached_actor once (see 2. above)."""
    if not verified():
        return
    from ray.tune.execution import tune_controller

    controller = tune_controller.TuneController
    original = controller._maybe_reuse_cached_actor
    if getattr(original, "_hpsearch", False):
        return

    def _maybe_reuse_cached_actor(self, trial) -> bool:
        own = self._trial_to_actor.get(trial)
        starting = self._actor_manager._live_actors_to_ray_actors_resources
        if own is not None and trial not in self._resetting_trials and own in starting:
            return False  # its own actor has resources and is on its way
        return original(self, trial)

    _maybe_reuse_cached_actor._hpsearch = True
    controller._maybe_reuse_cached_actor = _maybe_reuse_cached_actor
