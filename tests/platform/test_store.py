"""New SQLite stores copied from a migrated template behave as stores MLflow created itself."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpsearch.platform.tracking import store


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _tables(path: Path) -> dict[str, list[str]]:
    """Each table's and index's definition, its lines sorted: MLflow's own migrations order a table's
    constraints differently from one process to the next (they come out of a set)."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')").fetchall()
    return {name: sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()) for name, sql in rows}


def test_a_copied_store_has_mlflows_schema_and_its_own_default_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.prepare_sqlite_store("sqlite:///copied.db")
    MlflowClient("sqlite:///plain.db").get_experiment("0")  # made by MLflow, migrations and all
    assert _tables(tmp_path / "copied.db") == _tables(tmp_path / "plain.db")
    client = MlflowClient("sqlite:///copied.db")
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location.endswith(str(tmp_path / "mlruns" / "0"))
    experiment = client.create_experiment("hpsearch")
    assert experiment == MlflowClient("sqlite:///plain.db").create_experiment("hpsearch")  # same ids
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5, step=1)
    assert client.get_metric_history(run.info.run_id, "val_accuracy")[0].value == 0.5


def test_an_existing_store_or_another_backend_is_left_alone(tmp_path):
    existing = tmp_path / "mine.db"
    existing.write_bytes(b"")
    assert not store.prepare_sqlite_store(f"sqlite:///{existing}")
    assert existing.read_bytes() == b""
    assert not store.prepare_sqlite_store(f"sqlite:///{tmp_path / 'no-such-folder' / 'm.db'}")
    assert not store.prepare_sqlite_store("http://127.0.0.1:5000")
    assert not (tmp_path / "cache").exists()  # no template made for nothing
