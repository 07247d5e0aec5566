"""Seed replicates' arithmetic: seeds, intervals, the ranking and the verdict, on small tables."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from hpsearch.platform.replicates import choice_rule, format_statistics, interval, statistics, training_seeds, verdict


def test_training_seeds_never_repeat_the_trials_own() -> None:
    assert training_seeds(0, 3) == [1, 2, 3]
    assert training_seeds(2, 3) == [1, 3, 4]
    assert training_seeds(7, 2) == [1, 2]


def test_the_interval_is_students_t_around_the_mean() -> None:
    values = [0.91, 0.93, 0.95, 0.92]
    low, high = interval(values)
    mean, sem = sum(values) / 4, pd.Series(values).std(ddof=1) / 2
    assert (low, high) == pytest.approx((mean - stats.t.ppf(0.975, 3) * sem, mean + stats.t.ppf(0.975, 3) * sem))
    assert all(math.isnan(value) for value in interval([0.9]))


def _runs(rows: list[tuple[str, int, str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["of", "seed", "status", "value", "best_epoch"]).assign(
        run_id=lambda frame: [f"run{index}" for index in range(len(frame))])


TRIALS = pd.DataFrame({"trial": ["00000", "00001", "00002"], "best_val_loss": [0.30, 0.20, 0.25]})


def test_statistics_rank_by_mean_leave_unfinished_runs_out_and_keep_the_single_seed_apart() -> None:
    runs = _runs([("00001", 1, "completed", 0.40, 4), ("00001", 2, "completed", 0.42, 6),
                  ("00002", 1, "completed", 0.26, 5), ("00002", 2, "stopped_early", 0.28, 3),
                  ("00002", 3, "failed", float("nan"), 0), ("00002", 4, "interrupted", 0.01, 1)])
    table = statistics(runs, TRIALS, metric="val_loss", mode="min")  # a loss: the lowest mean leads
    assert table["trial"].tolist() == ["00002", "00001"]
    leader = table.iloc[0]
    assert leader["seeds"] == 2 and leader["mean"] == pytest.approx(0.27) and leader["best_epoch_mean"] == 4.0
    assert leader["single_seed"] == 0.25 and leader["run_ids"] == ["run2", "run3"]
    assert leader["std"] == pytest.approx(pd.Series([0.26, 0.28]).std())


def test_the_verdict_says_whether_the_leaders_interval_overlaps_another() -> None:
    apart = _runs([("a", 1, "completed", 0.90, 1), ("a", 2, "completed", 0.91, 1), ("a", 3, "completed", 0.92, 1),
                   ("b", 1, "completed", 0.80, 1), ("b", 2, "completed", 0.81, 1), ("b", 3, "completed", 0.82, 1)])
    table = statistics(apart, pd.DataFrame(columns=["trial"]), metric="val_accuracy", mode="max")
    assert "does not overlap any other" in verdict(table, metric="val_accuracy")
    close = _runs([("a", 1, "completed", 0.90, 1), ("a", 2, "completed", 0.95, 1),
                   ("b", 1, "completed", 0.89, 1), ("b", 2, "completed", 0.93, 1)])
    table = statistics(close, pd.DataFrame(columns=["trial"]), metric="val_accuracy", mode="max")
    assert verdict(table, metric="val_accuracy").startswith("the 95% intervals of trial a and trial b overlap")
    assert "over 2 new training seeds" in choice_rule(table, metric="val_accuracy", mode="max")
    assert "[0.6073, 1.2427]" in format_statistics(table)
