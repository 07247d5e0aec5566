"""Searches started at the same moment on one tracking store: each makes what it finds missing (the
SQLite store, the experiment) at once with the others, and all of them finish with all of their runs."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpsearch.platform.tracking import TrackingUnavailable, client_for, experiment_id_for
from hpsearch.platform.tracking.store import prepare_sqlite_store
from hpsearch.platform.tracking.tags import PARENT, PLANNED_TRIALS, ROLE, STATUS
from tests.platform.cluster_fixtures import cluster_env, start_tracking_server

EPOCHS = 2


def test_processes_making_one_store_at_once_all_use_one_valid_store(tmp_path):
    """All find no store and all make one: one stands, whole, and every process writes to it (none to
    a file another process replaced, none to half a copy)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcomes = race(_make_store_and_run, uri, processes=4)

    assert all(outcome.startswith("run ") for outcome in outcomes), outcomes
    assert [path.name for path in tmp_path.iterdir()] == ["mlflow.db"]  # no partial copy left behind
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hpsearch").experiment_id
    assert sorted(f"run {run.info.run_id}" for run in client.search_runs([experiment])) == sorted(outcomes)
    assert sorted(found.name for found in client.search_experiments()) == ["Default", "hpsearch"]


def test_processes_making_one_experiment_at_once_all_use_it(tmp_path):
    """The reported failure: `Experiment(name=hpsearch) already exists` for all but the first."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client_for(uri).get_experiment("0")  # the store exists: the race is on the experiment alone
    outcomes = race(_make_experiment, uri, processes=4)

    experiment = MlflowClient(uri).get_experiment_by_name("hpsearch")
    assert outcomes == [f"experiment {experiment.experiment_id}"] * 4


def test_a_deleted_experiment_of_that_name_says_how_to_bring_it_back(tmp_path):
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.delete_experiment(client.create_experiment("hpsearch"))

    with pytest.raises(TrackingUnavailable) as raised:
        experiment_id_for(client, "hpsearch")
    assert str(raised.value) == (
        "experiment 'hpsearch' (id 1) is deleted in this store; restore it (mlflow experiments restore "
        "--experiment-id 1), delete it for good (mlflow gc --experiment-ids 1), or set tracking.experiment to "
        "another name")


@pytest.mark.e2e
def test_searches_started_together_all_finish_with_every_epoch_once(tmp_path):
    """Two searches at once on a SQLite store that does not exist yet, then two at once through a
    tracking server: every search completes, and every trial run has each epoch's metrics once."""
    sqlite_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _wait_for(_start_together(sqlite_uri, tmp_path / "on-sqlite", searches=2))
    _assert_complete(sqlite_uri, searches=2)

    served = tmp_path / "served"
    backend = f"sqlite:///{served / 'server.db'}"
    prepare_sqlite_store(backend)  # a copy of the template: the server starts without MLflow's migrations
    server = start_tracking_server(served, backend_store_uri=backend)
    try:
        _wait_for(_start_together(server.uri, tmp_path / "on-server", searches=2))
        _assert_complete(server.uri, searches=2)
    finally:
        server.stop()


def _start_together(uri: str, folder: Path, *, searches: int) -> list[subprocess.Popen]:
    """`hpsearch run` in `searches` processes started at once, each in a working folder of its own."""
    started = []
    for number in range(searches):
        working = folder / f"search-{number}"
        working.mkdir(parents=True)
        started.append(subprocess.Popen(
            [sys.executable, "-m", "hpsearch.platform.cli", "run", "digits-quick", "--set", "search.num_samples=2",
             "--set", f"train.epochs={EPOCHS}", "--set", "search.max_concurrent=1", "--tracking-uri", uri,
             "--storage", str(working / "results")],
            cwd=working, env=cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True))  # a group of its own: its local Ray goes with it if it must be killed
    return started


def _wait_for(searches: list[subprocess.Popen], timeout: float = 480) -> list[str]:
    """What each search printed, once all have ended successfully."""
    try:
        outputs = [search.communicate(timeout=timeout)[0] for search in searches]
    finally:
        for search in searches:
            if search.poll() is None:
                os.killpg(search.pid, signal.SIGKILL)
                search.wait(timeout=30)
    for search, output in zip(searches, outputs):
        assert search.returncode == 0, output[-3000:]
    return outputs


def _assert_complete(uri: str, *, searches: int) -> None:
    from hpsearch.trainables.config import EPOCH_METRICS  # imports torch: not in the racing processes

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hpsearch").experiment_id
    parents = client.search_runs([experiment], filter_string=f"tags.`{ROLE}` = 'search'")
    assert len(parents) == searches
    for parent in parents:
        assert (parent.data.tags[STATUS], parent.info.status) == ("completed", "FINISHED")
        trials = client.search_runs([experiment], filter_string=f"tags.`{PARENT}` = '{parent.info.run_id}'")
        assert len(trials) == int(parent.data.tags[PLANNED_TRIALS]) == 2
        for trial in trials:
            assert (trial.data.tags[STATUS], trial.info.status) == ("completed", "FINISHED")
            logged = set(trial.data.metrics) & set(EPOCH_METRICS)
            assert {"val_accuracy", "train_loss"} <= logged
            for metric in logged:
                steps = sorted(point.step for point in client.get_metric_history(trial.info.run_id, metric))
                assert steps == list(range(1, EPOCHS + 1)), (trial.info.run_id, metric, steps)


# ----------------------------------------------------------------------------- processes released together

def race(work, *args: str, processes: int) -> list[str]:
    """Run `work(barrier, *args)` in `processes` processes released at the same moment; their outcomes.

    The processes come from a fork server that imports MLflow once: a fork of pytest's own process
    could inherit a Ray session's threads mid-lock, and a spawn per process would import MLflow each time."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow.tracking", "hpsearch.platform.tracking.runs", __name__])
    barrier, outcomes = context.Barrier(processes), context.SimpleQueue()
    racers = [context.Process(target=_report, args=(outcomes, work, barrier, *args)) for _ in range(processes)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=300)
    assert [racer.exitcode for racer in racers] == [0] * processes
    return [outcomes.get() for _ in racers]


def _report(outcomes, work, barrier, *args: str) -> None:
    try:
        outcome = work(barrier, *args)
    except Exception as error:  # noqa: BLE001  (told to the test, which shows it)
        outcome = f"{type(error).__name__}: {error}"
    outcomes.put(outcome)


def _make_store_and_run(barrier, uri: str) -> str:
    barrier.wait(timeout=120)
    client = client_for(uri)
    return f"run {client.create_run(experiment_id_for(client, 'hpsearch')).info.run_id}"


def _make_experiment(barrier, uri: str) -> str:
    client = client_for(uri)
    client.get_experiment("0")  # connected before the start: the processes meet at the experiment
    barrier.wait(timeout=120)
    return f"experiment {experiment_id_for(client, 'hpsearch')}"
