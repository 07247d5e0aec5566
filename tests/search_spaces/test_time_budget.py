"""`search.time_budget`: parsed from 90s, 30m, 2h or seconds; with it a search runs as many trials as fit."""
from __future__ import annotations

import mlflow
import pytest

from hpsearch.platform.search import describe_trials, planned_trials
from hpsearch.search_spaces.spec import SpecError, parse_duration, validate_spec


@pytest.mark.parametrize(("written", "seconds"), [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("1d", 86400.0), (" 2 h ", 7200.0), ("1h 30m 15s", 5415.0),
])
def test_durations(written, seconds):
    assert parse_duration(written) == seconds


@pytest.mark.parametrize(("written", "pattern"), [
    pytest.param("2 hours", r"^search\.time_budget: '2 hours' is not a duration; write seconds \(e\.g\. 5400\) or a "
                            r"number with a unit s, m, h or d \(e\.g\. 90s, 30m, 2h, 1h30m\)$", id="words"),
    pytest.param("5x", r"^search\.time_budget: '5x' is not a duration", id="unknown-unit"),
    pytest.param("h", r"^search\.time_budget: 'h' is not a duration", id="unit-without-number"),
    pytest.param(True, r"^search\.time_budget: True is not a duration", id="boolean"),
    pytest.param([1, 2], r"^search\.time_budget: \[1, 2\] is not a duration", id="list"),
    pytest.param(0, r"^search\.time_budget: 0 is not allowed: a time budget is a finite duration of more than 0 "
                    r"seconds", id="zero"),
    pytest.param(-30, r"^search\.time_budget: -30 is not allowed: .*more than 0 seconds", id="negative"),
    pytest.param("0s", r"^search\.time_budget: '0s' is not allowed: .*more than 0 seconds", id="zero-with-unit"),
    pytest.param(float("inf"), r"^search\.time_budget: inf is not allowed: a time budget is a finite duration",
                 id="infinite"),
    pytest.param(float("nan"), r"^search\.time_budget: nan is not allowed: a time budget is a finite duration",
                 id="nan"),
    pytest.param("1e400", r"^search\.time_budget: '1e400' is not allowed: a time budget is a finite duration",
                 id="overflowing-text"),
])
def test_a_bad_time_budget_is_one_line_naming_the_value(written, pattern):
    with pytest.raises(SpecError, match=pattern) as excinfo:
        validate_spec({"name": "x", "search": {"time_budget": written}})
    assert len(excinfo.value.problems) == 1, excinfo.value.problems


@pytest.mark.parametrize(("search", "num_samples", "trial_count", "described"), [
    pytest.param({"time_budget": "1h"}, None, None, "as many trials as fit in 1h", id="random-as-many-as-fit"),
    pytest.param({"time_budget": "1h", "algorithm": "optuna"}, None, None, "as many trials as fit in 1h",
                 id="optuna-as-many-as-fit"),
    pytest.param({"time_budget": "90s", "num_samples": 5}, 5, 5, "up to 5 trials within 1m30s",
                 id="whichever-comes-first"),
    pytest.param({"time_budget": "1h", "algorithm": "grid"}, 1, 2, "up to 2 trials within 1h",
                 id="grid-once-capped-by-the-budget"),
    pytest.param({}, 8, 8, "8 trials", id="no-budget"),
])
def test_trial_counts_under_a_time_budget(search, num_samples, trial_count, described):
    spec = validate_spec({"name": "x", "search": search, "space": {"batch_size": {"choice": [32, 64]}}})
    assert spec.search.num_samples == num_samples
    assert spec.trial_count() == trial_count == planned_trials(spec)  # the most it runs; None: the budget decides
    assert describe_trials(spec) == described


@pytest.mark.e2e
def test_a_time_budget_runs_trials_until_it_is_spent_and_the_search_completes(ray_session, tracking_uri, tmp_path,
                                                                              capsys):
    from hpsearch.platform.search import run_search

    spec = validate_spec({
        "name": "e2e-budget",
        "search": {"algorithm": "random", "time_budget": "10s", "max_concurrent": 2, "seed": 0},
        "train": {"epochs": 10, "model": "mlp", "hidden_sizes": [16]},  # about a second a trial
        "tracking": {"uri": tracking_uri, "experiment": "e2e"},
        "space": {"lr": {"loguniform": [0.001, 0.01]}},
    })

    outcome = run_search(spec, storage=tmp_path / "results")

    out = capsys.readouterr().out
    assert outcome.status == "completed", out
    assert "as many trials as fit in 10s" in out.splitlines()[0], out
    assert "time budget of 10s spent: no more trials start" in out  # the budget ended it, not a count
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=["e2e"])
    trials = runs[runs["tags.mlflow.parentRunId"] == outcome.parent_run_id]
    assert len(trials) >= 2, out
    # The trials the budget cut short ended as stopped early: no run is left running.
    assert set(trials["tags.hpsearch.status"]) <= {"completed", "stopped_early"}
    assert set(trials["status"]) == {"FINISHED"}
    assert sum(outcome.counts.values()) == len(trials)
    parent = runs[runs["run_id"] == outcome.parent_run_id].iloc[0]
    assert parent["tags.hpsearch.status"] == "completed"
