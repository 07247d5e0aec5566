"""Every use of Ray's and MLflow's private internals, in one place, each applied only on the versions
it was verified with (VERIFIED_RAY, VERIFIED_MLFLOW). On any other version hpsearch uses the public
APIs alone: searches are as correct, only slower to start, and learning curves slower to read.
tests/platform/test_compat.py fails loudly when an installed version is not verified, or when
anything named by `ray_missing()` or `mlflow_missing()` is gone, and when any other module of hpsearch
reaches a private name of Ray, MLflow or Optuna itself. Nothing here is imported at module
level, so light readers (the dashboard) may import this module without loading Ray.

Ray: two patches, both about how fast trials start on few cores.

1. Warm worker processes. As a local Ray session comes up, Ray starts one idle worker process per
   CPU; given `_system_config={"preload_python_modules": [...]}` those import torch, Ray Tune and
   hpsearch's training code while the driver is still opening the tracking store. A Tune trial actor
   only takes such a process if it asks for the session's runtime_env, which is none, but Tune
   registers its trainable with `runtime_env={"env_vars": ...}` (`PL_DISABLE_FORK` and variables
   copied from the driver). The processes of a local session inherit the driver's environment, so
   those variables are exported before Ray starts (`local_init_options`), and Tune's actor class
   cache (`class_cache._ActorClassCache.get`) registers the trainable without a runtime_env when
   every variable Tune would send is in what the session's processes inherited. On a cluster, whose
   other nodes never see the driver's environment, Tune's registration stands. The raylet kills
   workers idle for over a second (`idle_worker_killing_time_threshold_ms`) when it counts more than
   it wants; now and then it did so to both warm processes as the first trials asked for theirs, and
   started two cold ones instead (5-9 s later to train; their logs say "Worker exited because it was
   idle for a long time").
   A local session keeps idle workers a minute (`IDLE_WORKER_KEEP_MS`), past the search's start.

2. Actor reuse with short trials. With `reuse_actors`, Tune hands a finished trial's actor to the
   next trial and kills the actor that trial already had starting. A new trial process takes seconds
   to start: if trials are shorter, every actor started beside the one live actor is killed before
   its first trial, and `max_concurrent: 2` runs one trial at a time. The patched
   `TuneController._maybe_reuse_cached_actor` lets a trial whose own actor has its resources and is
   starting wait for it.

MLflow: many runs' metric histories in one query. The public client fetches one run's history a
request (`MlflowClient.get_metric_history`): learning curves of 50 trials are 50 round trips. Its
stores can do it in one (`get_metric_history_bulk` in the SQL stores,
`get_metric_history_bulk_interval` through a tracking server, 100 runs a request), reached through
the client's private `_tracking_client.store`. And an empty SQLite store's schema, made by MLflow's
own `SqlAlchemyStore` (`create_sqlite_schema`, for tracking/store.py's template).

Also here, with canaries in `ray_missing()`: ray.init's private `_node_ip_address`, which keeps a
local session on 127.0.0.1 on any Ray (a Ray without it refuses it rather than binding wider); and
the Optuna trial behind a Tune trial in Ray's OptunaSearch (`_ot_trials`), through which a
search's constraints reach Optuna's `Trial.set_constraint` (verified Ray only).
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Callable, Mapping

# Ray's loggers hpsearch silences: it tracks results in MLflow, not in Tune's result files, and says
# what it runs itself (one of them is a private module's).
QUIET_RAY_LOGGERS = ("ray.tune.analysis.experiment_analysis", "ray._private.authentication.authentication_token_setup",
                     "ray.tune.tune")


def quiet_ray_logs() -> None:
    for name in QUIET_RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------- Ray

VERIFIED_RAY = ("2.60.0",)  # Ray versions these patches were read against and tested with


def ray_version() -> str:
    import ray

    return ray.__version__


def ray_verified() -> bool:
    """Whether the installed Ray is one these patches were verified with."""
    return ray_version() in VERIFIED_RAY


def ray_missing() -> list[str]:
    """What the Ray patches rely on that the installed Ray lacks (empty on a verified Ray)."""
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
    import ray

    if 'kwargs.pop("_node_ip_address"' not in inspect.getsource(ray.init):  # a private option, read off kwargs
        problems.append("ray.init(_node_ip_address=...)")
    return problems + _optuna_search_missing()


IDLE_WORKER_KEEP_MS = 60_000  # Ray's default kills a worker idle for 1 s when it has more than it wants


def preload_options(modules: tuple[str, ...]) -> dict:
    """ray.init's private options that have the first worker processes import `modules`, and keep
    them while the search starts."""
    if not ray_verified():
        return {}
    return {"_system_config": {"preload_python_modules": list(modules),
                               "idle_worker_killing_time_threshold_ms": IDLE_WORKER_KEEP_MS}}


def tune_env_vars() -> dict[str, str]:
    """The env_vars Tune gives a trainable's runtime_env (ray.tune.execution.class_cache.get)."""
    from ray.tune.execution import class_cache

    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", ())
    return {**getattr(class_cache, "DEFAULT_ENV_VARS", {}),
            **{key: os.environ[key] for key in propagated if key in os.environ}}


def register_trainables_without_runtime_env(inherited: Callable[[], bool]) -> None:
    """Patch Tune's actor class cache once: while `inherited()` holds, a trainable's actor class
    asks for no runtime_env of its own."""
    if not ray_verified():
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
    if not ray_verified():
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


# --------------------------------------------------------------------------- warm worker processes

# What a trial process imports before its first trial: torch, Ray Tune and hpsearch's trainables
# (all through hpsearch.platform.trial), and torch._dynamo, which torch.optim loads on its first step.
PRELOADED_MODULES = ("hpsearch.platform.trial", "torch._dynamo")

_session: tuple[str, dict[str, str]] | None = None  # (GCS address, Tune's variables its processes inherited)


def local_init_options(worker_env: Mapping[str, str]) -> dict:
    """Exports `worker_env`, and what Tune adds to every trial's, for the processes of a local
    session; returns ray.init's extra options. `_node_ip_address` keeps a local session on 127.0.0.1
    (Ray has no authentication) on any Ray: were it gone, ray.init would refuse it, not bind wider."""
    os.environ.update(worker_env)
    os.environ.update({key: value for key, value in tune_env_vars().items() if key not in os.environ})
    return {"_node_ip_address": "127.0.0.1", **preload_options(PRELOADED_MODULES)}


def started_local_session() -> None:
    """Called once ray.init has started a local session: trial actors may share its processes."""
    import ray

    global _session
    _session = (ray.get_runtime_context().gcs_address, tune_env_vars())
    register_trainables_without_runtime_env(_inherited)


def _inherited() -> bool:
    """Whether this is hpsearch's local session, and Tune would send what its processes inherited."""
    import ray

    if _session is None or not ray.is_initialized() or ray.get_runtime_context().gcs_address != _session[0]:
        return False
    return tune_env_vars() == _session[1]


# --------------------------------------------------------------------------- MLflow

VERIFIED_MLFLOW = ("3.17.2",)  # MLflow versions this was read against and tested with


def mlflow_verified() -> bool:
    import mlflow

    return mlflow.__version__ in VERIFIED_MLFLOW


def mlflow_missing() -> list[str]:
    """What the bulk history relies on that the installed MLflow lacks (empty on a verified MLflow)."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    problems = []
    if "engine" not in inspect.getsource(SqlAlchemyStore.__init__):
        problems.append("SqlAlchemyStore(db_uri, default_artifact_root).engine")
    if "self._tracking_client" not in inspect.getsource(MlflowClient.__init__):
        problems.append("MlflowClient._tracking_client")
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    if not isinstance(getattr(TrackingServiceClient, "store", None), property):
        problems.append("TrackingServiceClient.store")
    if "max_results" not in inspect.signature(getattr(SqlAlchemyStore, "get_metric_history_bulk", None)
                                              or (lambda: None)).parameters:
        problems.append("SqlAlchemyStore.get_metric_history_bulk(run_ids, metric_key, max_results)")
    bulk_interval = getattr(RestStore, "get_metric_history_bulk_interval", None)
    if bulk_interval is None or not {"run_ids", "metric_key", "max_results", "start_step", "end_step"} <= set(
            inspect.signature(bulk_interval).parameters):
        problems.append("RestStore.get_metric_history_bulk_interval(run_ids, metric_key, max_results, ...)")
    return problems


def metric_histories(client, run_ids: list[str], metric: str, *, max_points: int) -> list[tuple[str, int, float]]:
    """(run id, step, value) of `metric` for every run in `run_ids`, in as few requests as the store allows."""
    store = client._tracking_client.store if mlflow_verified() else None
    if store is not None and hasattr(store, "get_metric_history_bulk"):  # SQL stores
        points = store.get_metric_history_bulk(run_ids, metric, max_results=max_points * len(run_ids))
        return [(point.run_id, point.step, point.value) for point in points]
    if store is not None and hasattr(store, "get_metric_history_bulk_interval"):  # a tracking server
        points = []
        for start in range(0, len(run_ids), 100):
            points += store.get_metric_history_bulk_interval(run_ids[start:start + 100], metric,
                                                             max_results=max_points, start_step=None, end_step=None)
        return [(point.run_id, point.step, point.value) for point in points]
    return [(run_id, point.step, point.value) for run_id in run_ids
            for point in client.get_metric_history(run_id, metric)]


# ---- Ray's OptunaSearch: the Optuna trial behind a Tune trial, to tell it the trial's constraints
# (Optuna 5's Trial.set_constraint) before OptunaSearch.on_trial_complete tells the study its values.

def optuna_trial_of(searcher, trial_id: str):
    """The optuna.Trial OptunaSearch asked for `trial_id` (its private `_ot_trials`); None on a Ray
    these internals were not verified with, where constraints then go untold (the trials are still
    marked infeasible by hpsearch)."""
    if not ray_verified():
        return None
    return getattr(searcher, "_ot_trials", {}).get(trial_id)


def _optuna_search_missing() -> list[str]:
    """What optuna_trial_of relies on that the installed Ray's OptunaSearch lacks (part of ray_missing)."""
    from ray.tune.search.optuna import OptunaSearch

    problems = []
    if "self._ot_trials[trial_id]" not in inspect.getsource(OptunaSearch.on_trial_complete):
        problems.append("OptunaSearch.on_trial_complete reading self._ot_trials[trial_id]")
    if "self._ot_trials[trial_id] = self._ot_study.ask(" not in inspect.getsource(OptunaSearch.suggest):
        problems.append("OptunaSearch.suggest keeping the Optuna trial in self._ot_trials[trial_id]")
    return problems


def create_sqlite_schema(path, artifacts) -> None:
    """A SQLite tracking store at `path` with MLflow's whole schema, made by MLflow's own SQL store
    (`mlflow.store.tracking.sqlalchemy_store`, the class MLflow's server uses: no public API makes an
    empty store). The canary is mlflow_missing. On an MLflow these internals were not verified with,
    the public client makes it instead: its first request builds the schema (slower, same store)."""
    if not mlflow_verified():
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{path}").search_experiments()
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(artifacts))
    store.engine.dispose()
