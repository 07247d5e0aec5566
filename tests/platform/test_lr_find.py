"""`hpsearch lr-find` writes its plot and suggestion and tracks them; the suggestion rule itself."""
from __future__ import annotations

import csv
import math

import pytest
from mlflow.tracking import MlflowClient

from hpsearch.trainables.lr_find import suggest_lr
from tests.conftest import run_cli


def test_suggestion_sits_on_the_steep_descent_before_the_minimum():
    lrs = [10 ** (-6 + 0.1 * i) for i in range(70)]  # 1e-6 .. ~1e1
    # Flat, then a descent centred on 1e-2, minimum near 1e-1, then divergence.
    losses = [2.3 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 2))) + (0 if lr < 0.1 else 10 * (lr - 0.1))
              for lr in lrs]
    suggested = suggest_lr(lrs, losses)
    assert 1e-3 < suggested < 1e-1
    assert suggested <= lrs[losses.index(min(losses))] / 10 + 1e-12


def test_suggestion_needs_a_curve():
    with pytest.raises(ValueError, match="fewer than 3 steps"):
        suggest_lr([1e-3, 1e-2], [2.0, 1.0])


def test_lr_find_writes_plot_table_and_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("lr-find", "digits-quick", "--out", "plots", "--steps", "60", "--tracking-uri", uri,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    plot, table = tmp_path / "plots" / "lr_find.png", tmp_path / "plots" / "lr_find.csv"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.open()))
    assert 10 <= len(rows) <= 60 and float(rows[1]["lr"]) > float(rows[0]["lr"])
    suggested = float(result.stdout.split("suggested learning rate: ")[1].split()[0])

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`hpsearch.role` = 'lr_find'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["suggested_lr"] == pytest.approx(suggested, rel=1e-2)
    assert run.data.params["model"] in ("mlp", "cnn")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"lr_find.png", "lr_find.csv"}


def test_lr_find_rejects_bad_input_before_running(tmp_path):
    result = run_cli("lr-find", "digits-quick", "--steps", "3", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: --steps: 3 is too few")
    assert list(tmp_path.iterdir()) == []
