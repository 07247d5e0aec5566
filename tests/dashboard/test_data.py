"""The dashboard's data functions on DataFrames shaped like hpsearch.query.trials."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpsearch.dashboard.data import (best_so_far, differing_settings, downsample, is_log_scaled, parameter_columns,
                                     parameter_importance)


def _trials(count: int = 40, seed: int = 0) -> pd.DataFrame:
    """A search where lr matters a lot, batch size a little, and the model choice not at all."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, count)
    batch = rng.choice([32, 64, 128], count)
    model = rng.choice(["mlp", "cnn"], count)
    accuracy = 0.99 - 0.3 * (np.log10(lr) + 2.5) ** 2 / 2.25 - 0.01 * (batch == 128) + rng.normal(0, 0.002, count)
    start = pd.Timestamp("2026-11-22T00:00:00Z") + pd.to_timedelta(np.arange(count) * 10, unit="s")
    return pd.DataFrame({
        "trial": [f"{i:05d}" for i in range(count)],
        "status": np.where(np.arange(count) % 4 == 3, "stopped_early", "completed"),
        "start_time": start,
        "end_time": start + pd.to_timedelta(rng.uniform(5, 30, count), unit="s"),
        "best_val_accuracy": accuracy,
        "params.lr": lr, "params.batch_size": batch, "params.model": model,
        "params.channels": np.where(model == "cnn", 16, np.nan),
    })


def test_parameter_columns_and_log_scaling():
    trials = _trials()
    assert parameter_columns(trials) == ["params.batch_size", "params.channels", "params.lr", "params.model"]
    assert is_log_scaled(trials["params.lr"])
    assert not is_log_scaled(trials["params.batch_size"])  # 32..128: one factor of 4
    assert not is_log_scaled(trials["params.model"])


@pytest.mark.parametrize("by", ["trial", "time"])
def test_best_so_far_never_gets_worse_and_ends_at_the_best(by):
    trials = _trials()
    curve = best_so_far(trials, metric="val_accuracy", mode="max", by=by)
    assert len(curve) == len(trials)
    assert curve["best"].is_monotonic_increasing
    assert curve["best"].iloc[-1] == pytest.approx(trials["best_val_accuracy"].max())
    assert curve["x"].is_monotonic_increasing
    assert curve["stopped_early"].sum() == (trials["status"] == "stopped_early").sum()


def test_best_so_far_for_a_metric_to_minimize():
    trials = _trials().rename(columns={"best_val_accuracy": "best_val_loss"})
    curve = best_so_far(trials, metric="val_loss", mode="min")
    assert curve["best"].is_monotonic_decreasing


def test_differing_settings_marks_what_differs():
    trials = _trials()
    mlp = trials[trials["params.model"] == "mlp"]["trial"].iloc[:2].tolist()
    table = differing_settings(trials, mlp)
    assert list(table.columns) == [*mlp, "differs"]
    assert "channels" not in table.index  # neither trial has it
    assert table.loc["lr", "differs"] and not table.loc["model", "differs"]
    with pytest.raises(ValueError, match="compare 2 to 5 trials, got 1"):
        differing_settings(trials, mlp[:1])


def test_parameter_importance_finds_the_parameter_that_matters():
    importance = parameter_importance(_trials(60), metric="val_accuracy", mode="max")
    assert importance.idxmax() == "lr"
    assert importance["lr"] > 0.7
    assert "channels" not in importance  # only some trials have it


def test_downsample_keeps_the_ends_and_the_limit():
    frame = pd.DataFrame({"x": np.arange(12_345)})
    small = downsample(frame, max_points=5000)
    assert len(small) <= 5000 and small["x"].iloc[0] == 0 and small["x"].iloc[-1] == 12_344
    assert downsample(frame.head(10)).equals(frame.head(10))
