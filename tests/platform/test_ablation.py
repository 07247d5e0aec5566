"""Ablation: each technique of a configuration switched off in turn, paired by seed.

The arithmetic on small tables, then an ablation of a real digits search on a real local Ray and a
real SQLite store, its table checked against the ablation runs' own metrics.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from hpsearch import query
from hpsearch.platform.ablation import (ALL_ON, TECHNIQUES, active_techniques, describe_off, effects, switched_off,
                                        verdict)
from hpsearch.platform.cli import main
from hpsearch.platform.search import run_search
from hpsearch.search_spaces.spec import validate_spec
from hpsearch.trainables import TrainConfig


def test_every_technique_switches_off_to_the_training_default() -> None:
    defaults = TrainConfig().model_dump()
    for technique in TECHNIQUES:
        for field, value in technique.off.items():
            if field in defaults:  # each knob's default is its off setting
                assert defaults[field] == value, (technique.name, field)
    assert active_techniques(defaults) == []


def test_only_the_active_techniques_are_ablated_and_each_changes_its_own_fields() -> None:
    config = {**TrainConfig().model_dump(), "augment": "light", "dropout": 0.3, "weight_decay": 1e-4}
    names = [technique.name for technique in active_techniques(config)]
    assert names == ["augmentation", "weight_decay", "dropout"]
    dropout = next(technique for technique in TECHNIQUES if technique.name == "dropout")
    off = switched_off(config, dropout)
    assert off["dropout"] == 0.0 and {k: v for k, v in off.items() if k != "dropout"} == \
        {k: v for k, v in config.items() if k != "dropout"}
    assert describe_off(config, dropout) == "dropout 0.3 -> 0.0"


def _runs(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["technique", "seed", "status", "value"]).assign(
        of="00001", run_id=lambda frame: [f"run{index}" for index in range(len(frame))])


def test_effects_are_paired_by_seed_signed_by_mode_and_ranked() -> None:
    runs = _runs([(ALL_ON, 1, "completed", 0.30), (ALL_ON, 2, "completed", 0.20), (ALL_ON, 3, "completed", 0.25),
                  ("dropout", 1, "completed", 0.40), ("dropout", 2, "completed", 0.26), ("dropout", 3, "completed", 0.33),
                  ("ema", 1, "completed", 0.29), ("ema", 2, "completed", 0.21), ("ema", 3, "failed", float("nan")),
                  ("mixup", 1, "completed", 0.28), ("mixup", 4, "completed", 0.10)])  # seed 4 has no pair
    table = effects(runs, mode="min")  # a loss: switching dropout off raised it, so dropout helped
    assert table["technique"].tolist() == ["dropout", "ema", "mixup"]
    dropout = table.iloc[0]
    differences = [0.10, 0.06, 0.08]
    assert dropout["effect"] == pytest.approx(np.mean(differences)) and dropout["seeds"] == 3
    half = stats.t.ppf(0.975, 2) * np.std(differences, ddof=1) / np.sqrt(3)
    assert (dropout["ci_low"], dropout["ci_high"]) == pytest.approx((0.08 - half, 0.08 + half))
    assert dropout["agree"] == 3 and dropout["all_on"] == pytest.approx(0.25) and dropout["off"] == pytest.approx(0.33)
    ema = table.iloc[1]
    assert ema["seeds"] == 2 and ema["effect"] == pytest.approx(0.0) and ema["agree"] == 0
    mixup = table.iloc[2]
    assert mixup["seeds"] == 1 and mixup["effect"] == pytest.approx(-0.02) and np.isnan(mixup["ci_low"])
    said = verdict(table)
    assert "helped on every reading of these seeds: dropout" in said and "ema, mixup" in said


# ------------------------------------------------------------------------------------------------ end to end

def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ablated(ray_session, tmp_path_factory):
    """A finished one-trial digits search with five techniques on, ablated over two seeds."""
    folder = tmp_path_factory.mktemp("ablation")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = validate_spec({
        "name": "digits-ablation",
        "search": {"algorithm": "grid", "max_concurrent": 2},
        "train": {"epochs": 2, "model": "cnn", "channels": 8, "lr": 0.01, "dropout": 0.3, "label_smoothing": 0.1,
                  "warmup_epochs": 1, "ema_decay": 0.9},
        "tracking": {"uri": uri, "experiment": "ablation"},
        "space": {"weight_decay": {"grid": [0.0001]}},
    })
    outcome = run_search(spec, storage=folder / "results")
    assert outcome.status == "completed"
    result = _cli(["ablate", "digits-ablation", "--seeds", "2", "--tracking-uri", uri, "--storage",
                   str(folder / "results")])
    return outcome, uri, folder, result


e2e = pytest.mark.e2e


@e2e
def test_the_ablation_table_is_that_of_the_ablation_runs_own_metrics(ablated) -> None:
    outcome, uri, _, (status, out, err) = ablated
    assert status == 0, err
    runs = MlflowClient(uri).search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}' "
                                                              f"and tags.`hpsearch.role` = 'ablation'")
    # Everything on and each of the five techniques off, over seeds 1 and 2.
    assert len(runs) == 12
    value = {(run.data.tags["hpsearch.ablation"], int(run.data.tags["hpsearch.replicate_seed"])):
             run.data.metrics["best_val_accuracy"] for run in runs}
    assert {technique for technique, _ in value} == {ALL_ON, "weight_decay", "dropout", "label_smoothing", "warmup", "ema"}
    for run in runs:  # each run's params say what it trained with
        off = run.data.tags["hpsearch.ablation"]
        assert run.data.tags["hpsearch.status"] == "completed" and run.data.tags["hpsearch.replicate_of"] == "00000"
        assert run.data.params["seed"] == run.data.tags["hpsearch.replicate_seed"]
        assert run.data.params["weight_decay"] == ("0.0" if off == "weight_decay" else "0.0001")
        switched = {"dropout": "0.0", "label_smoothing": "0.0", "warmup_epochs": "0.0", "ema_decay": "0.0"}
        assert {name: run.data.params.get(name) for name in switched} == \
            {name: (value if name.startswith(off) else None) for name, value in switched.items()}
    table = query.ablation(outcome.search_id, uri)
    assert table.attrs["of"] == "00000" and len(table) == 5
    assert table["effect"].is_monotonic_decreasing
    for _, row in table.iterrows():
        differences = np.array([value[(ALL_ON, seed)] - value[(row["technique"], seed)] for seed in (1, 2)])
        assert row["effect"] == pytest.approx(differences.mean(), abs=1e-12) and row["seeds"] == 2
        half = stats.t.ppf(0.975, 1) * differences.std(ddof=1) / np.sqrt(2)
        if half > 0:
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((differences.mean() - half, differences.mean() + half))
        if abs(differences.mean()) > 1e-12:
            assert row["agree"] == sum(1 for d in differences if abs(d) > 1e-12 and (d > 0) == (differences.mean() > 0))
    assert "ablation of trial 00000" in out and "most valuable first" in out
    # Ablation runs are neither trials nor replicates of the search.
    assert len(query.trials(outcome.search_id, uri)) == 1 and query.replicates(outcome.search_id, uri).empty


@e2e
def test_ablating_again_runs_only_what_is_missing(ablated) -> None:
    outcome, uri, folder, _ = ablated
    status, out, err = _cli(["ablate", outcome.search_id, "--seeds", "2", "--tracking-uri", uri])
    assert status == 0, err
    assert "nothing to run" in out
    assert len(query.ablation(outcome.search_id, uri)) == 5


@e2e
@pytest.mark.parametrize("argv, pattern", [
    (["--seeds", "1"], "--seeds: 1 is not allowed; from 2 to 50 seeds"),
    (["--trial", "00042"], "--trial: search '.*' has no trial '00042'; its trials: 00000"),
])
def test_ablate_bad_input_is_one_line(ablated, argv, pattern) -> None:
    import re

    outcome, uri, _, _ = ablated
    status, out, err = _cli(["ablate", outcome.search_id, "--tracking-uri", uri, *argv])
    assert status == 2 and len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert len(query.ablation(outcome.search_id, uri)) == 5  # nothing more was run


@e2e
def test_the_dashboard_draws_the_ablation_from_the_store(ablated) -> None:
    from hpsearch.dashboard.callbacks import ablation_view
    from hpsearch.dashboard.source import RunSource

    outcome, uri, _, _ = ablated
    figure, said = ablation_view(RunSource(uri), outcome.search_id)
    table = query.ablation(outcome.search_id, uri)
    (bars,) = figure.data
    assert list(bars.y) == table["technique"].tolist()[::-1]  # the most valuable at the top
    assert list(bars.x) == pytest.approx(table["effect"].tolist()[::-1])
    assert said.startswith("trial 00000's configuration, each technique switched off in turn")
