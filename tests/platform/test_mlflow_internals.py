"""The one private MLflow call hpsearch makes (bulk metric histories, hpsearch.platform.tracking.
_mlflow_internals) still works as expected, and gives what the public per-run calls give."""
from __future__ import annotations

import mlflow
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hpsearch.platform.tracking import _mlflow_internals


def test_the_installed_mlflow_is_one_this_was_verified_with():
    assert _mlflow_internals.verified(), (
        f"MLflow {mlflow.__version__} is not in VERIFIED_MLFLOW {_mlflow_internals.VERIFIED_MLFLOW}: verify "
        f"hpsearch/platform/tracking/_mlflow_internals.py against it before adding it")


def test_everything_it_relies_on_is_there():
    assert _mlflow_internals.missing() == [], f"MLflow {mlflow.__version__} changed: {_mlflow_internals.missing()}"


@pytest.mark.parametrize("verified", [True, False], ids=["bulk", "public-per-run"])
def test_bulk_histories_equal_the_public_ones(tmp_path, monkeypatch, verified):
    if not verified:
        monkeypatch.setattr(_mlflow_internals, "VERIFIED_MLFLOW", ())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("e")
    run_ids = []
    for number in range(3):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=[Metric("val_accuracy", number + step / 10, 0, step) for step in range(1, 5)])
        run_ids.append(run_id)
    points = sorted(_mlflow_internals.metric_histories(client, run_ids, "val_accuracy", max_points=100))
    public = sorted((run_id, point.step, point.value) for run_id in run_ids
                    for point in client.get_metric_history(run_id, "val_accuracy"))
    assert points == public and len(points) == 12
