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
    assert not store.prepare_sqlite_store("http://127.0.0.1:5000")
    assert not (tmp_path / "cache").exists()  # no template made for nothing


def test_a_store_in_missing_folders_is_made_from_the_template_too(tmp_path):
    # Not left to MLflow: its own creation of a store fails when two processes run it at once.
    target = tmp_path / "new" / "folders" / "m.db"
    assert store.prepare_sqlite_store(f"sqlite:///{target}")
    assert MlflowClient(f"sqlite:///{target}").get_experiment("0").name == "Default"


def test_a_store_that_appeared_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    """Another process made the store while this one copied the template, and may be writing to it:
    the copy is dropped, with or without hard links on the file system."""
    target = tmp_path / "mlflow.db"
    assert store.prepare_sqlite_store(f"sqlite:///{target}")
    MlflowClient(f"sqlite:///{target}").create_experiment("theirs")
    for links in (True, False):
        if not links:
            monkeypatch.setattr(store.os, "link", _no_hard_links)
        partial = tmp_path / ".mlflow.db.partial"
        partial.write_bytes(store._template().read_bytes())
        assert not store._publish(partial, target)
        with sqlite3.connect(target) as connection:  # the file, not MLflow's cached connection to it
            assert ("theirs",) in connection.execute("SELECT name FROM experiments").fetchall()


def test_without_hard_links_a_store_is_still_made_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(store.os, "link", _no_hard_links)
    target = tmp_path / "mlflow.db"
    assert store.prepare_sqlite_store(f"sqlite:///{target}")
    assert _tables(target) == _tables(store._template())
    assert sorted(path.name for path in tmp_path.iterdir()) == [".mlflow.db.lock", "cache", "mlflow.db"]


def _no_hard_links(source, target):
    raise PermissionError(1, "Operation not permitted", str(target))
