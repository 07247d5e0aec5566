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
    """A finished digits search whose two configurations were replicated with two new seeds each,
    finalized once with --promote; the CLI's output and the replicates as finalize saw them kept."""
    folder = tmp_path_factory.mktemp("final")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = validate_spec({
        "name": "digits-final",
        "search": {"algorithm": "grid", "max_concurrent": 2, "replicates": {"top_k": 2, "seeds": 2}},
        "train": {"epochs": 5, "model": "cnn", "lr": 0.01},
        "tracking": {"uri": uri, "experiment": "final"},
        "space": {"channels": {"grid": [8, 16]}},
    })
    outcome = run_search(spec, storage=folder / "results")
    assert outcome.status == "completed"
    replicated = query.replicates(outcome.search_id, uri)
    out = _cli(["finalize", "digits-final", "--promote", "--tracking-uri", uri])
    return outcome, uri, folder, out, replicated


def _replicate_runs(uri: str, parent_run_id: str) -> list:
    return MlflowClient(uri).search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and "
                                                              f"tags.`hpsearch.role` = 'replicate'")


def test_replicates_statistics_are_those_of_the_replicate_runs_own_metrics(finalized) -> None:
    from scipy import stats

    outcome, uri, _, _, replicated = finalized
    runs = _replicate_runs(uri, outcome.parent_run_id)
    trials = query.trials(outcome.search_id, uri).set_index("trial")
    assert len(runs) == 4 and len(trials) == 2  # replicates are runs of the search, not trials
    by_trial: dict[str, list] = {}
    for run in runs:
        assert run.data.tags["hpsearch.status"] == "completed"
        of, seed = run.data.tags["hpsearch.replicate_of"], int(run.data.tags["hpsearch.replicate_seed"])
        assert run.data.params["seed"] == str(seed) and seed != 0  # a new training seed, not the trial's
        assert run.data.params["channels"] == str(trials.loc[of, "params.channels"])  # the configuration it repeats
        by_trial.setdefault(of, []).append(run)
    assert {of: sorted(int(r.data.tags["hpsearch.replicate_seed"]) for r in group)
            for of, group in by_trial.items()} == {"00000": [1, 2], "00001": [1, 2]}
    assert replicated["seeds"].tolist() == [2, 2]
    for _, row in replicated.iterrows():
        values = np.array([r.data.metrics["best_val_accuracy"] for r in by_trial[row["trial"]]])
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
        assert row["single_seed"] == pytest.approx(trials.loc[row["trial"], "best_val_accuracy"])
    # The winner is the best mean, and the search's summary and query.best say so.
    assert replicated["mean"].is_monotonic_decreasing
    assert outcome.best["trial"] == replicated["trial"].iloc[0]
    assert "mean best val_accuracy over 2 new training seeds" in outcome.best["chosen_by"]
    assert ("overlap" in outcome.best["verdict"]) == (replicated["ci_low"].iloc[0] <= replicated["ci_high"].iloc[1])


def test_finalize_trains_for_the_mean_best_epoch_of_the_winners_replicates(finalized) -> None:
    outcome, uri, _, (status, out, err), replicated = finalized
    assert status == 0, err
    client = MlflowClient(uri)
    final = client.get_run(client.get_model_version_by_alias("digits-final", "champion").run_id)
    assert final.data.tags["hpsearch.final.trial"] == replicated["trial"].iloc[0]
    assert final.data.params["epochs"] == str(max(1, round(replicated["best_epoch_mean"].iloc[0])))


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
    outcome, uri, _, (status, out, err), _ = finalized
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
    history = client.get_metric_history(final.info.run_id, "test_accuracy")
    assert len(history) == 1  # evaluated once
    assert version.tags["test_accuracy"] == f"{history[0].value:.6g}"
    # Its costs are its trial's, as the search measured them, on the run and the version.
    chosen = query.trials(outcome.search_id, uri).set_index("trial").loc[final.data.tags["hpsearch.final.trial"]]
    for name in ("params", "macs", "size_mb", "latency_ms", "latency_batch_ms", "peak_memory_mb"):
        assert final.data.metrics[name] == chosen[name] > 0 and version.tags[name] == f"{chosen[name]:.6g}", name
    assert f"its costs, as the search measured them: params {chosen['params']:,.0f}, macs " in out
    # The final run is no trial: the search still has its two.
    assert len(query.trials(outcome.search_id, uri)) == 2


def test_predict_on_png_files_agrees_with_the_logged_test_figures(finalized, test_pngs) -> None:
    _, uri, _, _, _ = finalized
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
    outcome, uri, _, _, _ = finalized
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
    _, uri, _, _, _ = finalized
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (8, 8)).save(rgb)
    shown = [part.format(pngs=test_pngs, bad=bad, rgb=rgb) for part in argv]
    status, out, err = _cli([*shown, "--tracking-uri", uri])
    assert status == 2, out + err
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert len(MlflowClient(uri).search_model_versions("name = 'digits-final'")) == 1


def test_hpsearch_replicate_adds_only_the_seeds_a_configuration_lacks(finalized) -> None:
    """Last in this module: it adds a replicate run to the shared search."""
    outcome, uri, _, _, replicated = finalized
    leader = replicated["trial"].iloc[0]
    status, out, err = _cli(["replicate", "digits-final", "--top-k", "1", "--seeds", "3", "--tracking-uri", uri])
    assert status == 0, err
    assert re.search(r"replicating search \S+: 1 run \(1 configuration", out), out
    runs = _replicate_runs(uri, outcome.parent_run_id)
    added = [run for run in runs if run.data.tags["hpsearch.replicate_seed"] == "3"]
    assert len(runs) == 5 and [run.data.tags["hpsearch.replicate_of"] for run in added] == [leader]
    status, out, err = _cli(["best", "digits-final", "--format", "json", "--tracking-uri", uri])
    best = json.loads(out)
    assert {row["trial"]: row["seeds"] for row in best["replicates"]} == {leader: 3, replicated["trial"].iloc[1]: 2}
    assert best["trial"] == best["replicates"][0]["trial"]
    # Run again, nothing is missing: nothing runs.
    status, out, err = _cli(["replicate", "digits-final", "--top-k", "1", "--seeds", "3", "--tracking-uri", uri])
    assert status == 0 and "nothing to run" in out, out + err
    assert len(_replicate_runs(uri, outcome.parent_run_id)) == 5


@pytest.mark.parametrize(("argv", "pattern"), [
    (["replicate", "no-such-search"], r"no search named 'no-such-search'"),
    (["replicate", "digits-final", "--seeds", "1"], r"--seeds: 1 is not allowed; from 2 to 50 seeds"),
    (["replicate", "digits-final", "--top-k", "0"], r"--top-k: 0 is not allowed"),
])
def test_replicate_bad_input_is_one_line(finalized, argv, pattern) -> None:
    _, uri, _, _, _ = finalized
    status, out, err = _cli([*argv, "--tracking-uri", uri])
    assert status == 2 and len(err.strip().splitlines()) == 1 and re.search(pattern, err), out + err
