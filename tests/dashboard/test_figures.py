"""Figures from DataFrames: axes for log, categorical and branch parameters; point budgets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpsearch.dashboard import data, figures


def _trials(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    optimizer = rng.choice(["adam", "sgd"], n)
    return pd.DataFrame({
        "trial": [f"{i:05d}" for i in range(n)],
        "status": rng.choice(["completed", "stopped_early"], n),
        "best_val_accuracy": rng.uniform(0.5, 1.0, n),
        "params.lr": 10 ** rng.uniform(-4, -1, n),
        "params.dropout": rng.uniform(0.0, 0.5, n),
        "params.optimizer": optimizer,
        "params.momentum": pd.Series([0.9 if o == "sgd" else None for o in optimizer], dtype=object),
        "params.batchnorm": pd.Series(rng.choice([True, False], n), dtype=object),
        "start_time": pd.Timestamp("2026-11-22", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
        "end_time": pd.Timestamp("2026-11-22", tz="UTC") + pd.to_timedelta(np.arange(n) + 5, unit="s"),
    })


def test_parallel_coordinates_label_log_categorical_and_missing_parameters():
    figure = figures.parallel_coordinates(_trials(200), metric="val_accuracy", mode="max")
    dimensions = {d.label: d for d in figure.data[0].dimensions}
    assert set(dimensions) == {"lr (log)", "dropout", "optimizer", "momentum", "batchnorm", "val_accuracy"}
    assert list(dimensions["optimizer"].ticktext) == ["adam", "sgd"]
    assert list(dimensions["batchnorm"].ticktext) == ["False", "True"]  # a choice, not a 0..1 number
    assert figures.MISSING_LABEL in dimensions["momentum"].ticktext  # adam trials have no momentum
    assert max(dimensions["lr (log)"].values) <= -1 + 1e-9  # log10 of lr


def test_a_uniform_parameter_is_not_taken_for_a_log_scaled_one():
    trials = _trials(500)
    assert data.is_log_scaled(trials["params.lr"])
    assert not data.is_log_scaled(trials["params.dropout"])  # its smallest values span decades too


def test_metric_against_a_log_parameter_uses_a_log_axis_coloured_by_a_choice():
    figure = figures.metric_vs_param(_trials(300), "lr", metric="val_accuracy", color_by="optimizer")
    assert figure.layout.xaxis.type == "log"
    assert sorted(trace.name for trace in figure.data) == ["optimizer=adam", "optimizer=sgd"]


@pytest.mark.parametrize("n, webgl", [(800, False), (20000, True)])
def test_large_searches_are_thinned_and_drawn_with_webgl(n, webgl):
    trials = _trials(n)
    made = [
        figures.metric_vs_param(trials, "lr", metric="val_accuracy"),
        figures.best_so_far_figure(data.best_so_far(trials, metric="val_accuracy", mode="max", by="trial"),
                                   metric="val_accuracy", by="trial"),
    ]
    for figure in made:
        for trace in figure.data:
            assert len(trace.x) <= data.MAX_POINTS
            assert (trace.type == "scattergl") == (webgl and len(trace.x) > figures.WEBGL_ABOVE)
    lines = figures.parallel_coordinates(trials, metric="val_accuracy", mode="max").data[0]
    assert len(lines.dimensions[0].values) == min(n, data.MAX_POINTS)
    best = trials["best_val_accuracy"].max()
    assert best in list(lines.dimensions[-1].values)  # thinning keeps the best trial


def test_best_so_far_marks_early_stopped_trials():
    trials = _trials(50)
    figure = figures.best_so_far_figure(data.best_so_far(trials, metric="val_accuracy", mode="max", by="time"),
                                        metric="val_accuracy", by="time")
    names = [trace.name for trace in figure.data]
    assert names == ["trial", "stopped early", "best so far"]
    assert len(figure.data[1].x) == (trials["status"] == "stopped_early").sum()


def test_empty_searches_say_so_rather_than_draw_nothing():
    empty = _trials(0)
    assert "no trial" in figures.parallel_coordinates(empty, metric="val_accuracy", mode="max").layout.annotations[0].text
    assert "select trials" in figures.learning_curves(pd.DataFrame(columns=["trial", "step", "value"]),
                                                      metric="val_loss").layout.annotations[0].text


def test_thinning_best_so_far_keeps_every_improvement():
    trials = _trials(20000, seed=3)
    frame = data.best_so_far(trials, metric="val_accuracy", mode="max", by="trial")
    figure = figures.best_so_far_figure(frame, metric="val_accuracy", by="trial")
    line = figure.data[-1]
    improvements = frame.loc[frame["best"].ne(frame["best"].shift()), "x"]
    assert len(line.x) <= data.MAX_POINTS
    assert set(improvements) <= set(line.x)
    assert max(line.y) == trials["best_val_accuracy"].max()


def test_replicated_configurations_are_drawn_with_their_intervals_as_error_bars():
    from hpsearch.platform.replicates import statistics

    runs = pd.DataFrame({"of": ["00003", "00003", "00003", "00001", "00001"], "seed": [1, 2, 3, 1, 2],
                         "status": ["completed"] * 4 + ["failed"], "value": [0.90, 0.92, 0.94, 0.80, np.nan],
                         "best_epoch": [3, 4, 5, 2, 0], "run_id": list("abcde")})
    trials = pd.DataFrame({"trial": ["00001", "00003"], "best_val_accuracy": [0.95, 0.93]})
    table = statistics(runs, trials, metric="val_accuracy", mode="max")
    figure = figures.replicates_figure(runs, table, metric="val_accuracy")
    seeds, single, means = figure.data
    assert list(seeds.y) == [0.90, 0.92, 0.94, 0.80]  # every finished seed, the failed one left out
    assert list(single.y) == [0.93, 0.95]  # the search's own trials, apart from the replicates
    assert list(means.x) == ["trial 00003", "trial 00001"] and list(means.y) == pytest.approx([0.92, 0.80])
    assert list(means.error_y.array) == pytest.approx([table["ci_high"][0] - 0.92, 0.0])  # one seed: no interval
    assert list(means.error_y.arrayminus) == pytest.approx([0.92 - table["ci_low"][0], 0.0])
    assert figures.replicates_figure(runs.iloc[0:0], table.iloc[0:0], metric="val_accuracy").layout.annotations


def test_the_pareto_view_joins_the_front_and_fades_the_rest():
    trials = pd.DataFrame({"trial": ["a", "b", "c", "d"], "status": ["completed", "completed", "completed", "infeasible"],
                           "best_val_accuracy": [0.9, 0.8, 0.7, np.nan], "latency_ms": [2.0, 1.0, 3.0, 0.5],
                           "params.lr": [0.1, 0.01, 0.001, 0.1]})
    figure = figures.pareto_figure(trials, x="best_val_accuracy", y="latency_ms", modes=("max", "min"), front={"a", "b"})
    names = [trace.name for trace in figure.data]
    assert names == ["dominated", None, "front"]  # the infeasible trial never trained: no accuracy to place it by
    dominated, line, front = figure.data
    assert list(dominated.customdata) == ["c"] and dominated.opacity < 1
    assert list(line.x) == [0.8, 0.9] and list(front.customdata) == ["a", "b"]
    assert "lr=0.1" in front.text[0]
    assert "1 infeasible trial not drawn" in figure.layout.title.text


def test_the_ablation_view_puts_the_most_valuable_technique_on_top_coloured_by_its_interval():
    from hpsearch.platform.ablation import ALL_ON, effects

    runs = pd.DataFrame({
        "of": "00002", "technique": [ALL_ON, ALL_ON, "dropout", "dropout", "ema", "ema"], "seed": [1, 2] * 3,
        "status": "completed", "value": [0.95, 0.96, 0.90, 0.91, 0.96, 0.95], "run_id": [f"r{i}" for i in range(6)]})
    table = effects(runs, mode="max")
    figure = figures.ablation_figure(table, metric="val_accuracy", of="00002")
    (bars,) = figure.data
    assert list(bars.y) == ["ema", "dropout"]  # drawn bottom up: the most valuable last, at the top
    assert list(bars.x) == pytest.approx([0.0, 0.05])
    assert list(bars.marker.color) == ["#9aa5b1", "#2ca02c"]  # an interval holding zero is grey; above it, green
    assert "trial 00002" in figure.layout.xaxis.title.text
    assert figures.ablation_figure(table.iloc[0:0], metric="val_accuracy", of=None).layout.annotations
