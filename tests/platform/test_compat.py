"""The canary of hpsearch.platform.compat: Ray's and MLflow's private internals are still what
hpsearch's uses of them expect. When this fails after an upgrade: read the code they reach in the new
version, adapt them, and add the version to VERIFIED_RAY or VERIFIED_MLFLOW; until then hpsearch uses
the public APIs alone on it. And the fence: no other module reaches such a name itself."""
from __future__ import annotations

import ast
from pathlib import Path

import mlflow
import pytest
import ray
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from ray.tune.execution import class_cache, tune_controller

from hpsearch.platform import compat


def test_the_installed_ray_is_one_the_patches_were_verified_with():
    assert compat.ray_verified(), (
        f"Ray {ray.__version__} is not in VERIFIED_RAY {compat.VERIFIED_RAY}: verify "
        f"hpsearch/platform/compat.py against it (see its docstring) before adding it")


def test_everything_the_patches_rely_on_is_there():
    assert compat.ray_missing() == [], f"Ray {ray.__version__} changed: {compat.ray_missing()}"


def test_the_patches_apply_once_on_a_verified_ray():
    compat.keep_starting_actors()
    compat.keep_starting_actors()
    patched = tune_controller.TuneController._maybe_reuse_cached_actor
    assert getattr(patched, "_hpsearch", False)
    compat.register_trainables_without_runtime_env(lambda: False)
    assert getattr(class_cache._ActorClassCache.get, "_hpsearch", False)
    system_config = compat.preload_options(("json",))["_system_config"]
    assert system_config["preload_python_modules"] == ["json"]
    assert system_config["idle_worker_killing_time_threshold_ms"] == compat.IDLE_WORKER_KEEP_MS


def test_an_unverified_ray_runs_tune_as_it_is(monkeypatch):
    monkeypatch.setattr(compat, "VERIFIED_RAY", ("0.0.0",))
    assert not compat.ray_verified()
    assert compat.preload_options(("json",)) == {}
    original = tune_controller.TuneController._maybe_reuse_cached_actor
    compat.keep_starting_actors()  # already patched or not, nothing new is applied
    assert tune_controller.TuneController._maybe_reuse_cached_actor is original


def test_the_installed_mlflow_is_one_this_was_verified_with():
    assert compat.mlflow_verified(), (
        f"MLflow {mlflow.__version__} is not in VERIFIED_MLFLOW {compat.VERIFIED_MLFLOW}: verify "
        f"hpsearch/platform/compat.py against it before adding it")


def test_everything_it_relies_on_is_there():
    assert compat.mlflow_missing() == [], f"MLflow {mlflow.__version__} changed: {compat.mlflow_missing()}"


@pytest.mark.parametrize("verified", [True, False], ids=["bulk", "public-per-run"])
def test_bulk_histories_equal_the_public_ones(tmp_path, monkeypatch, verified):
    if not verified:
        monkeypatch.setattr(compat, "VERIFIED_MLFLOW", ())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("e")
    run_ids = []
    for number in range(3):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=[Metric("val_accuracy", number + step / 10, 0, step) for step in range(1, 5)])
        run_ids.append(run_id)
    points = sorted(compat.metric_histories(client, run_ids, "val_accuracy", max_points=100))
    public = sorted((run_id, point.step, point.value) for run_id in run_ids
                    for point in client.get_metric_history(run_id, "val_accuracy"))
    assert points == public and len(points) == 12


@pytest.mark.parametrize("verified", [True, False], ids=["mlflow-store", "public-client"])
def test_an_empty_store_has_mlflows_whole_schema_either_way(tmp_path, monkeypatch, verified):
    import sqlite3

    if not verified:
        monkeypatch.setattr(compat, "VERIFIED_MLFLOW", ())
    monkeypatch.chdir(tmp_path)
    compat.create_sqlite_schema(tmp_path / "store.db", tmp_path / "artifacts")
    with sqlite3.connect(tmp_path / "store.db") as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"experiments", "runs", "metrics", "params", "tags", "latest_metrics"} <= tables and revision
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    assert client.create_run(client.create_experiment("e")).info.run_id  # usable as it is


# Private names other modules may reach: hpsearch's own, and the standard library's and torch's, none of
# Ray, MLflow or Optuna (whose private uses are all in compat.py).
OWN_PRIVATE = {
    ("dashboard/figures.py", "_settings"),  # a column of its own, named in pandas' DataFrame.assign
    ("platform/replicates.py", "_paged"),  # hpsearch.platform.query's
    ("platform/tracking/tags.py", "_replace"),  # urllib's SplitResult, a namedtuple: its public API
    ("search_spaces/_safe_yaml.py", "_as_text"), ("search_spaces/_safe_yaml.py", "_refuse"),  # its own class's
    ("trainables/lr_find.py", "_train"), ("trainables/lr_find.py", "_inputs"),  # its own TrainingSession's
    ("trainables/pruning.py", "_parameters"),  # torch.nn.Module's: keeps a pruned layer's parameter order
}
FENCED_PACKAGES = ("ray", "mlflow", "optuna")


def _private_reaches(path: Path) -> list[tuple[int, str]]:
    """Where a module imports a private module or name of Ray, MLflow or Optuna, reads a private
    attribute of anything but itself (`self`, `cls`), or passes a private keyword argument."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            modules = []
        found += [(node.lineno, module) for module in modules if module.split(".")[0] in FENCED_PACKAGES
                  and any(part.startswith("_") for part in module.split("."))]
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append((node.lineno, node.attr))
        if isinstance(node, ast.Call):
            found += [(node.lineno, keyword.arg) for keyword in node.keywords if (keyword.arg or "").startswith("_")]
    return found


def test_no_module_but_compat_reaches_a_private_name_of_ray_mlflow_or_optuna():
    package = Path(compat.__file__).parents[1]
    reached = {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if name == "platform/compat.py":
            continue
        for line, what in _private_reaches(path):
            if (name, what) not in OWN_PRIVATE:
                reached.setdefault(name, []).append(f"line {line}: {what}")
    assert not reached, f"private names reached outside platform/compat.py: {reached}"
    # The check sees what it looks for: compat.py itself reaches Ray's and MLflow's privates.
    assert {"_tracking_client", "_maybe_reuse_cached_actor", "_ActorClassCache"} <= {
        what for _, what in _private_reaches(Path(compat.__file__))}
