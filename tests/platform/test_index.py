"""A search's trial snapshot and the catch-up that keeps it current, on a real SQLite store."""
from __future__ import annotations

import time

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from hpsearch.platform import query
from hpsearch.platform.tracking.index import INDEX_TAG, TrialRuns, read_index, write_index
from tests.dashboard.runs import add_trial, finish_trial, log_epochs, make_search


@pytest.fixture
def store(tracking_uri):
    client = MlflowClient(tracking_uri)
    parent = make_search(client)
    return client, parent, client.get_run(parent).info.experiment_id


def _by_run(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["run_id"]: {"status": row["status"], "metrics.val_accuracy": row["metrics.val_accuracy"],
                            "params.lr": row["params.lr"], "tags.hpsearch.status": row["tags.hpsearch.status"]}
            for _, row in frame.iterrows()}


def test_without_a_snapshot_every_trial_run_is_read(store, tracking_uri):
    client, parent, experiment = store
    run_ids = {add_trial(client, parent, number) for number in range(4)}
    runs = TrialRuns.load(client, experiment_id=experiment, parent_run_id=parent)
    assert runs.snapshot_at is None
    assert set(runs.frame["run_id"]) == run_ids  # children only: not the parent
    mlflow.set_tracking_uri(tracking_uri)
    plain = mlflow.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert _by_run(runs.frame) == _by_run(plain)


def test_a_snapshot_reads_back_as_the_runs_it_was_taken_from(store):
    client, parent, experiment = store
    add_trial(client, parent, 0, optimizer="sgd")  # momentum only in this one: a branch parameter
    add_trial(client, parent, 1, optimizer="adam")
    runs = TrialRuns.load(client, experiment_id=experiment, parent_run_id=parent)
    write_index(client, runs)
    assert client.get_run(parent).data.tags[INDEX_TAG] == str(runs.snapshot_at)
    frame, written_at = read_index(client, parent)
    assert written_at == runs.snapshot_at
    assert _by_run(frame) == _by_run(runs.frame)
    momentum = frame.set_index("tags.hpsearch.trial_id")["params.momentum"]
    assert momentum["abc_00000"] == "0.9" and pd.isna(momentum["abc_00001"])


def test_catching_up_fetches_only_new_and_changed_runs(store):
    client, parent, experiment = store
    finished = [add_trial(client, parent, number) for number in range(3)]
    time.sleep(1.2)  # beyond the slack second in which runs started just before the newest are fetched again
    running = add_trial(client, parent, 3, epochs=1, finish=False)
    write_index(client, TrialRuns.load(client, experiment_id=experiment, parent_run_id=parent))

    log_epochs(client, running, [2, 3], seed=3)  # the running trial moves on and finishes
    finish_trial(client, running)
    new = add_trial(client, parent, 4, epochs=1, finish=False)  # a trial starts after the snapshot
    runs = TrialRuns.load(client, experiment_id=experiment, parent_run_id=parent)
    assert runs.snapshot_at is not None
    assert runs.last_fetched == 2  # the new run and the one that was running, not the finished ones
    table = runs.frame.set_index("run_id")
    assert set(table.index) == {*finished, running, new}
    assert table.at[running, "status"] == "FINISHED" and table.at[running, "metrics.epoch"] == 3
    assert table.at[new, "status"] == "RUNNING"

    client.set_terminated(finished[0], "KILLED")  # an interrupted trial, then resumed:
    client.update_run(finished[0], status="RUNNING")
    assert runs.refresh(client) >= 1
    assert runs.frame.set_index("run_id").at[finished[0], "status"] == "RUNNING"


def test_query_trials_through_a_snapshot_matches_a_full_read(store, tracking_uri):
    client, parent, experiment = store
    for number in range(5):
        add_trial(client, parent, number, optimizer="sgd" if number % 2 else "adam")
    full = query.trials(parent, tracking_uri)
    write_index(client, TrialRuns.load(client, experiment_id=experiment, parent_run_id=parent))
    through_snapshot = query.trials(parent, tracking_uri)
    columns = ["trial", "status", "run_id", "epochs", "val_accuracy", "best_val_accuracy", "best_epoch",
               "params.lr", "params.optimizer", "params.momentum", "params.batch_size"]
    pd.testing.assert_frame_equal(full[columns], through_snapshot[columns])
    assert isinstance(through_snapshot.loc[0, "params.batch_size"], int)  # types survive the snapshot
