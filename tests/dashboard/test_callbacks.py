"""The dashboard's callbacks called directly, on real MLflow stores, and the app's HTTP edge."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpsearch.dashboard import callbacks, create_app
from hpsearch.dashboard.source import RunSource
from hpsearch.platform import query
from hpsearch.platform.tracking import client_for
from tests.conftest import run_cli
from tests.dashboard.runs import SEARCH_ID, add_trial, finish_trial, log_epochs, make_search


@pytest.fixture
def handmade(tracking_uri):
    client = client_for(tracking_uri)
    parent = make_search(client)
    return client, parent


def test_first_view_of_a_real_search_fills_every_part(searched_store):
    source = RunSource(searched_store)
    search_id = query.searches(searched_store).iloc[0].search_id
    trials = query.trials(search_id, searched_store)
    view = callbacks.search_view(source, search_id, known_version=0)
    assert len(view.row_data) == len(trials) == 6
    assert {row["trial"] for row in view.row_data} == set(trials["trial"])
    assert "params__lr" in view.row_data[0]  # dots would read as nested fields in AG Grid
    labels = [dimension["label"] for dimension in view.parcoords.data[0].dimensions]
    assert labels[-1] == "val_accuracy" and "model" in labels and "optimizer" in labels
    assert {option["value"] for option in view.param_options} >= {"lr", "model", "optimizer", "batch_size"}
    assert view.metric == "val_accuracy"
    # nothing new on the next tick: nothing is sent
    assert callbacks.search_view(source, search_id, known_version=view.version).header is None


def test_a_tick_sends_only_new_and_changed_trials(handmade, tracking_uri):
    client, parent = handmade
    add_trial(client, parent, 0)
    running = add_trial(client, parent, 1, epochs=1, finish=False)
    source = RunSource(tracking_uri, max_age_s=0)
    first = callbacks.search_view(source, SEARCH_ID, known_version=0)
    assert [row["status"] for row in sorted(first.row_data, key=lambda r: r["trial"])] == ["completed", "running"]

    log_epochs(client, running, [2, 3], seed=1)
    finish_trial(client, running)
    add_trial(client, parent, 2, epochs=1, finish=False)
    tick = callbacks.search_view(source, SEARCH_ID, known_version=first.version)
    assert tick.version > first.version and tick.row_data is None
    assert [row["trial"] for row in tick.row_transaction["add"]] == ["00002"]
    assert [(row["trial"], row["status"], row["epochs"]) for row in tick.row_transaction["update"]] == \
        [("00001", "completed", 3)]


def test_a_tick_with_nothing_new_sends_nothing_even_with_missing_metrics(handmade, tracking_uri):
    client, parent = handmade
    add_trial(client, parent, 0)
    failed = add_trial(client, parent, 1, epochs=0, finish=False)  # failed before its first epoch
    finish_trial(client, failed, status="failed")
    diverged = add_trial(client, parent, 2, epochs=0, finish=False)  # NaN losses in its first epoch
    log_epochs(client, diverged, [1], seed=2, diverge_at=1)
    finish_trial(client, diverged, status="diverged")
    source = RunSource(tracking_uri, max_age_s=0)
    first = callbacks.search_view(source, SEARCH_ID, known_version=0)
    for _ in range(2):
        assert callbacks.search_view(source, SEARCH_ID, known_version=first.version).header is None


def test_importance_is_not_recomputed_until_the_finished_trials_grow(handmade, tracking_uri):
    client, parent = handmade
    for number in range(6):
        add_trial(client, parent, number, optimizer="sgd" if number % 2 else "adam")
    source = RunSource(tracking_uri, max_age_s=0)
    first = callbacks.importance_view(source, SEARCH_ID)
    assert {"lr", "optimizer"} <= set(first.data[0].y)
    assert callbacks.importance_view(source, SEARCH_ID) is first
    add_trial(client, parent, 6)
    source.search(SEARCH_ID)  # the next look at the store finds it
    assert callbacks.importance_view(source, SEARCH_ID) is not first


def test_learning_curves_are_the_metric_histories_of_the_selected_trials(searched_store):
    source = RunSource(searched_store)
    search_id = query.searches(searched_store).iloc[0].search_id
    trials = query.trials(search_id, searched_store)
    chosen = trials["trial"].tolist()[:2]
    figure = callbacks.curves_view(source, search_id, chosen, "val_loss")
    assert [trace.name for trace in figure.data] == [f"trial {trial}" for trial in chosen]
    client = MlflowClient(searched_store)
    for trace, run_id in zip(figure.data, trials["run_id"][:2]):
        history = sorted((point.step, point.value) for point in client.get_metric_history(run_id, "val_loss"))
        assert list(zip(trace.x, trace.y)) == history


def test_comparison_highlights_the_settings_that_differ(handmade, tracking_uri):
    client, parent = handmade
    add_trial(client, parent, 0, optimizer="adam", lr=0.01)
    add_trial(client, parent, 1, optimizer="sgd", lr=0.01)
    table = callbacks.compare_view(RunSource(tracking_uri), SEARCH_ID, ["00000", "00001"])
    rows = {row.children[0].children: row.className for row in table.children[1].children[1:]}
    assert rows["optimizer"] == "differs" and rows["momentum"] == "differs"  # sgd only
    assert rows["lr"] == "same"
    hint = callbacks.compare_view(RunSource(tracking_uri), SEARCH_ID, ["00000"])
    assert "select 2 to 5" in hint.children


def test_searches_rows_count_trials_by_state(handmade, tracking_uri):
    client, parent = handmade
    add_trial(client, parent, 0)
    finish_trial(client, add_trial(client, parent, 1, epochs=2, finish=False), status="stopped_early")
    add_trial(client, parent, 2, finish=False)
    (row,) = callbacks.searches_rows(RunSource(tracking_uri))
    assert (row["running"], row["done"], row["stopped_early"], row["failed"]) == (1, 2, 1, 0)
    assert row["search_id"] == f"[{SEARCH_ID}](/search/{SEARCH_ID})"
    assert row["best"] == pytest.approx(query.trials(SEARCH_ID, tracking_uri)["best_val_accuracy"].max())


def test_the_searches_page_reads_an_ended_search_by_its_recorded_totals(searched_store):
    """Each search is read once, in the list: an ended one's trials are never loaded for its row."""

    class CountingSource(RunSource):
        loaded: list[str] = []

        def search(self, search_id, **kwargs):
            self.loaded.append(search_id)
            return super().search(search_id, **kwargs)

    source = CountingSource(searched_store)
    (row,) = callbacks.searches_rows(source)
    assert source.loaded == []
    trials = query.trials(query.searches(searched_store).iloc[0].search_id, searched_store)
    assert row["done"] == int(trials["status"].isin(["completed", "stopped_early"]).sum())
    assert row["stopped_early"] == int((trials["status"] == "stopped_early").sum()) and row["running"] == 0


@pytest.mark.parametrize("path, search, page", [
    ("/", "", "searches-grid"),
    (f"/search/{SEARCH_ID}", "?trials=00001,00003", "trials-grid"),
    ("/nowhere", "", "not-found"),
])
def test_urls_route_to_their_page(path, search, page):
    assert page in str(callbacks.route(path, search))


def test_a_deep_link_carries_the_selection():
    assert callbacks.selected_from_query(callbacks.selection_query(["00001", "00003"])) == ["00001", "00003"]
    assert callbacks.selected_from_query("") == []


def test_basic_auth_guards_every_request_when_switched_on(searched_store):
    app = create_app(searched_store, auth=("team", "s3cret"))
    client = app.server.test_client()
    assert client.get("/").status_code == 401
    wrong = base64.b64encode(b"team:nope").decode()
    assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"team:s3cret").decode()
    assert client.get("/", headers={"Authorization": f"Basic {right}"}).status_code == 200
    assert create_app(searched_store).server.test_client().get("/").status_code == 200


@pytest.mark.parametrize("args, message", [
    (["--refresh", "0.1"], "--refresh: 0.1 is below 0.5 seconds"),
    (["--port", "70000"], "--port: 70000 is not a port number"),
    (["--auth-user", "team"], "--auth-user: set the password in $HPSEARCH_DASHBOARD_PASSWORD"),
    (["--tracking-uri", "sqlite:///missing.db"], "no tracking store at sqlite:///missing.db"),
])
def test_bad_dashboard_arguments_are_one_line_errors_and_nothing_starts(args, message, tmp_path: Path):
    result = run_cli("dashboard", *args, cwd=tmp_path, env={"HPSEARCH_DASHBOARD_PASSWORD": ""}, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store created where a path was mistyped
