"""The one use of MLflow's private internals: many runs' metric histories in one query.

MLflow's public client fetches one run's history a request (`MlflowClient.get_metric_history`);
learning curves of 50 trials are then 50 round trips. Its stores can do it in one
(`get_metric_history_bulk` in the SQL stores, `get_metric_history_bulk_interval` through a tracking
server, 100 runs a request), reached through the client's private `_tracking_client.store`. That is
used only on the MLflow versions it was verified with (VERIFIED_MLFLOW); any other MLflow gets the
public per-run calls, slower and otherwise the same. tests/platform/test_mlflow_internals.py fails
loudly when the installed MLflow is not verified, or when what `missing()` checks is gone.
"""
from __future__ import annotations

import inspect

VERIFIED_MLFLOW = ("3.17.2",)  # MLflow versions this was read against and tested with


def verified() -> bool:
    import mlflow

    return mlflow.__version__ in VERIFIED_MLFLOW


def missing() -> list[str]:
    """What this module relies on that the installed MLflow lacks (empty on a verified MLflow)."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    problems = []
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
    store = client._tracking_client.store if verified() else None
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
