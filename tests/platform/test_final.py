"""From a search to a model: finalize (retrain on train + val, test once, register) and predict.

A real digits search on a real local Ray, a real SQLite store with MLflow's Model Registry, and the
test split written out as real PNG files for `predict`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from hpsearch import query
from hpsearch.platform.cli import main
from hpsearch.platform.search import run_search
from hpsearch.search_spaces.spec import validate_spec
from hpsearch.trainables import load_dataset

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finalized(ray_session, tmp_path_factory):
    """A finished digits search, finalized once with --promote; the CLI's output kept."""
    folder = tmp_path_factory.mktemp("final")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = validate_spec({
        "name": "digits-final",
        "search": {"algorithm": "grid", "max_concurrent": 2},
        "train": {"epochs": 6, "model": "cnn", "lr": 0.01},
        "tracking": {"uri": uri, "experiment": "final"},
        "space": {"channels": {"grid": [8, 16]}},
    })
    outcome = run_search(spec, storage=folder / "results")
    assert outcome.status == "completed"
    out = _cli(["finalize", "digits-final", "--promote", "--tracking-uri", uri])
    return outcome, uri, folder, out


def _cli(argv: list[str], capsys=None) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory) -> Path:
    """The digits test split as PNG files, one folder per label: what `predict` reads."""
    folder = tmp_path_factory.mktemp("test-pngs")
    test = load_dataset("digits").test
    for index, (image, label) in enumerate(zip(test.images, test.labels)):
        (folder / str(int(label))).mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / str(int(label)) / f"{index:04d}.png")
    return folder


def test_finalize_registers_a_version_tested_once(finalized) -> None:
    outcome, uri, _, (status, out, err) = finalized
    assert status == 0, err
    assert re.search(r"registered models:/digits-final/1 \(aliases: candidate, champion\)", out), out
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("digits-final", "champion")
    assert str(version.version) == "1"
    assert str(client.get_model_version_by_alias("digits-final", "candidate").version) == "1"
    assert version.tags["hpsearch.search_id"] == outcome.search_id
    final = client.get_run(version.run_id)
    assert final.data.tags["hpsearch.role"] == "final"
    assert final.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
    assert final.data.params["trained_on"] == "train+val"
    assert final.data.params["epochs"] == str(outcome.best["best_epoch"])  # the epochs the search chose
    history = client.get_metric_history(final.info.run_id, "test_accuracy")
    assert len(history) == 1  # evaluated once
    assert version.tags["test_accuracy"] == f"{history[0].value:.6g}"
    # The final run is no trial: the search still has its two.
    assert len(query.trials(outcome.search_id, uri)) == 2


def test_predict_on_png_files_agrees_with_the_logged_test_figures(finalized, test_pngs) -> None:
    _, uri, _, _ = finalized
    status, out, err = _cli(["predict", "models:/digits-final@champion", str(test_pngs), "--format", "json",
                             "--top-k", "3", "--tracking-uri", uri])
    assert status == 0, err
    rows = json.loads(out)
    assert len(rows) == len(load_dataset("digits").test) and all(len(row["top_k"]) == 3 for row in rows)
    accuracy = np.mean([row["class"] == Path(row["path"]).parent.name for row in rows])
    client = MlflowClient(uri)
    final = client.get_run(client.get_model_version_by_alias("digits-final", "champion").run_id)
    assert accuracy == pytest.approx(final.data.metrics["test_accuracy"], abs=1e-9)
    assert accuracy > 0.8


def test_load_model_gives_the_logits_the_final_run_was_tested_with(finalized, test_pngs) -> None:
    outcome, uri, _, _ = finalized
    by_alias = query.load_model("models:/digits-final@champion", uri)
    by_search = query.load_model(outcome.search_id, uri)
    files = sorted(test_pngs.rglob("*.png"))
    labels = torch.tensor([int(path.parent.name) for path in files])
    with torch.no_grad():
        logits = by_alias.module(by_alias.preprocess(files))
        again = by_search.module(by_search.preprocess(files))
    assert torch.equal(logits, again)
    client = MlflowClient(uri)
    final = client.get_run(client.get_model_version_by_alias("digits-final", "champion").run_id)
    loss = float(torch.nn.functional.cross_entropy(logits, labels))
    assert loss == pytest.approx(final.data.metrics["test_loss"], rel=1e-5)
    assert by_alias.classes == tuple(str(digit) for digit in range(10)) and by_alias.image_size == 8


@pytest.mark.parametrize(("argv", "pattern"), [
    (["finalize", "digits-final", "--trial", "99"], r"has no trial '99'; its trials: \['00000', '00001'\]"),
    (["finalize", "no-such-search"], r"no search named 'no-such-search'"),
    (["predict", "models:/nobody@champion", "{pngs}"], r"no model 'models:/nobody@champion'"),
    (["predict", "digits-final", "{pngs}/nothing-here"], r"nothing-here: no such file or folder"),
    (["predict", "digits-final", "{bad}"], r"not a readable image"),
    (["predict", "digits-final", "{rgb}"], r"a colour \(3 channels\) image; the model takes grayscale images"),
])
def test_bad_input_is_one_line_and_registers_nothing(finalized, test_pngs, tmp_path, argv, pattern) -> None:
    _, uri, _, _ = finalized
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (8, 8)).save(rgb)
    shown = [part.format(pngs=test_pngs, bad=bad, rgb=rgb) for part in argv]
    status, out, err = _cli([*shown, "--tracking-uri", uri])
    assert status == 2, out + err
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert len(MlflowClient(uri).search_model_versions("name = 'digits-final'")) == 1
