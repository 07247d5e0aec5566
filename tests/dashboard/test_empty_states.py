"""Every view of the dashboard on searches that have nothing to show yet, or never will, and on a
running search as its first results arrive: the states written by hpsearch's real tracker
(tests/dashboard/runs.py), the views called as the app calls them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
from mlflow.tracking import MlflowClient
from plotly.io.json import to_json_plotly

from hpsearch.dashboard import callbacks
from hpsearch.dashboard.source import RunSource
from hpsearch.platform.tracking import client_for
from tests.dashboard.runs import (SEARCH_ID, add_trial, fail_before_start, finish_search, finish_trial, log_epochs,
                                  make_search)


def _no_trials(client: MlflowClient, parent: str) -> None:
    pass


def _started_without_epochs(client: MlflowClient, parent: str) -> None:
    add_trial(client, parent, 0, epochs=0, finish=False)
    add_trial(client, parent, 1, epochs=0, finish=False, optimizer="sgd")


def _epochs_without_best(client: MlflowClient, parent: str) -> None:
    add_trial(client, parent, 0, epochs=2, finish=False, best=False)
    add_trial(client, parent, 1, epochs=1, finish=False, optimizer="sgd", best=False)


def _all_failed(client: MlflowClient, parent: str) -> None:
    finish_trial(client, add_trial(client, parent, 0, epochs=0, finish=False), status="failed")
    fail_before_start(client, parent, 1)
    finish_search(client, parent, status="failed")


def _all_diverged_at_once(client: MlflowClient, parent: str) -> None:
    """A search on val_loss whose trials' first epoch gave NaN: best_val_loss is NaN, not missing."""
    for number in (0, 1):
        run_id = add_trial(client, parent, number, epochs=0, finish=False, optimizer=("adam", "sgd")[number])
        log_epochs(client, run_id, [1], seed=number, diverge_at=1)
        finish_trial(client, run_id, status="diverged")
    finish_search(client, parent, status="failed")


@dataclass(frozen=True)
class State:
    fill: Callable[[MlflowClient, str], None]
    reason: str  # what every view of results says instead
    trials: int
    curves: int  # selected trials with a learning curve to draw
    metric: str = "val_accuracy"
    mode: str = "max"


STATES = {
    "no trials": State(_no_trials, "no trials yet", trials=0, curves=0),
    "trials, no epoch": State(_started_without_epochs, "no trial has reported val_accuracy yet (2 running)",
                              trials=2, curves=0),
    "epochs, no best": State(_epochs_without_best, "no trial has reported val_accuracy yet (2 running)",
                             trials=2, curves=2),
    "all failed": State(_all_failed, "no trial reported val_accuracy (2 failed)", trials=2, curves=0),
    "all diverged (NaN)": State(_all_diverged_at_once, "no trial reported val_loss (2 diverged)", trials=2,
                                curves=2, metric="val_loss", mode="min"),
}


@pytest.mark.parametrize("state", STATES.values(), ids=STATES.keys())
def test_every_view_says_why_it_has_nothing_to_show(state: State, tracking_uri):
    client = client_for(tracking_uri)
    state.fill(client, make_search(client, metric=state.metric, mode=state.mode))
    source = RunSource(tracking_uri, max_age_s=0)

    (row,) = _json(callbacks.searches_rows(source))
    assert row["best"] is None and row["done"] == 0

    view = callbacks.search_view(source, SEARCH_ID, known_version=0, initial_selection=["00000", "00009"])
    _json(view.__dict__)
    assert len(view.row_data) == state.trials
    assert f"no best trial yet: {state.reason}" in _text(view.best_card)
    assert f"{state.trials} trials" in _text(view.header)
    assert _message(view.parcoords) == state.reason
    assert view.selected == {"ids": ["00000"] if state.trials else []}  # a linked trial that is not there is dropped

    for by in ("trial", "time"):
        assert _message(callbacks.best_so_far_view(source, SEARCH_ID, by)) == state.reason
    first_param = view.param_options[0]["value"] if view.param_options else None
    assert _message(callbacks.metric_vs_param_view(source, SEARCH_ID, first_param, None)) == state.reason
    assert _message(callbacks.importance_view(source, SEARCH_ID)) == state.reason

    selected = [row["trial"] for row in view.row_data]
    curves = _json(callbacks.curves_view(source, SEARCH_ID, selected, view.metric))
    assert len(curves.data) == state.curves
    if selected and not state.curves:
        assert _message(curves) == f"no {view.metric} from the selected trials yet"
    if len(selected) >= 2:
        table = _json(callbacks.compare_view(source, SEARCH_ID, selected[:2]))
        assert f"best_{state.metric} - -" in _text(table)
    assert callbacks.column_defs(source.search(SEARCH_ID).trials, view.columns_shown)
    assert callbacks.search_view(source, SEARCH_ID, known_version=view.version).header is None  # nothing new


def test_a_running_search_shows_its_results_as_they_arrive(tracking_uri):
    """The page opened before any trial finished an epoch (where importance once raised KeyError),
    then kept up to date tick by tick while trials report, end and start."""
    client = client_for(tracking_uri)
    parent = make_search(client)
    first = add_trial(client, parent, 0, epochs=0, finish=False)
    source = RunSource(tracking_uri, max_age_s=0)
    view = callbacks.search_view(source, SEARCH_ID, known_version=0)
    assert _message(callbacks.importance_view(source, SEARCH_ID)).startswith("no trial has reported val_accuracy")

    log_epochs(client, first, [1], seed=0)
    second = add_trial(client, parent, 1, epochs=0, finish=False, optimizer="sgd")
    tick = callbacks.search_view(source, SEARCH_ID, known_version=view.version)
    _json(tick.__dict__)
    assert [row["trial"] for row in tick.row_transaction["add"]] == ["00001"]
    assert [(row["trial"], row["epochs"]) for row in tick.row_transaction["update"]] == [("00000", 1)]
    assert "Best trial: 00000" in _text(tick.best_card) and "at epoch 1 (running)" in _text(tick.best_card)
    assert len(tick.parcoords.data[0].dimensions[-1].values) == 1  # the trial without an epoch is not a line
    assert _message(callbacks.best_so_far_view(source, SEARCH_ID, "time")) == \
        "no trial with a val_accuracy has ended yet"  # by end time: the one with a result still runs
    assert len(callbacks.best_so_far_view(source, SEARCH_ID, "trial").data) == 2  # its point and the best line
    assert "importance needs at least two" in _message(callbacks.importance_view(source, SEARCH_ID))
    compare = _text(callbacks.compare_view(source, SEARCH_ID, ["00000", "00001"]))
    assert "best_val_accuracy" in compare and "-" in compare.split("best_val_accuracy")[1].split()[:3]

    log_epochs(client, first, [2, 3], seed=0)
    finish_trial(client, first)
    log_epochs(client, second, [1], seed=1)
    later = callbacks.search_view(source, SEARCH_ID, known_version=tick.version)
    _json(later.__dict__)
    assert {row["trial"]: row["status"] for row in later.row_transaction["update"]} == \
        {"00000": "completed", "00001": "running"}
    assert len(callbacks.best_so_far_view(source, SEARCH_ID, "time").data[0].x) == 1
    assert len(callbacks.metric_vs_param_view(source, SEARCH_ID, "lr", "optimizer").data) == 2
    assert not callbacks.importance_view(source, SEARCH_ID).layout.annotations  # two trials that differ: bars
    assert len(_json(callbacks.curves_view(source, SEARCH_ID, ["00000", "00001"], "val_loss")).data) == 2
    (row,) = callbacks.searches_rows(source)
    assert (row["running"], row["done"], row["status"]) == (1, 1, "running") and row["best"] is not None


def _message(figure) -> str | None:
    """The message of an empty figure, which draws nothing else; None for a figure with data."""
    _json(figure)
    if figure.data:
        return None
    return figure.layout.annotations[0].text


def _text(component: Any) -> str:
    """The words a Dash component shows, children in order, separated by spaces."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(child) for child in component)
    return _text(getattr(component, "children", None))


def _json(value: Any) -> Any:
    """What Dash would send the browser must be serializable as Dash serializes it."""
    to_json_plotly(value)
    return value


def test_a_search_whose_driver_went_silent_shows_as_interrupted(tracking_uri, monkeypatch):
    """A driver that died without a trace leaves its runs "running"; once its heartbeat is older than
    SILENT_AFTER_S the dashboard shows the search and its unfinished trials as interrupted."""
    from hpsearch.platform.tracking import tags

    client = client_for(tracking_uri)
    parent = make_search(client)
    add_trial(client, parent, 0, epochs=3)
    add_trial(client, parent, 1, epochs=1, finish=False)
    source = RunSource(tracking_uri, max_age_s=0)
    view = callbacks.search_view(source, SEARCH_ID, known_version=0)
    assert [row["status"] for row in callbacks.searches_rows(source)] == ["running"]

    monkeypatch.setattr(tags, "SILENT_AFTER_S", -1.0)  # every heartbeat is now too old
    (row,) = callbacks.searches_rows(source)
    assert (row["status"], row["running"]) == ("interrupted", 0)
    tick = callbacks.search_view(source, SEARCH_ID, known_version=view.version)
    assert {row["trial"]: row["status"] for row in tick.row_transaction["update"]} == {"00001": "interrupted"}
