"""A search on a user's own images and models, end to end: an ImageFolder tree of real PNG files,
streamed through loader processes, a torchvision model from pretrained weights on disk, and a
plug-in model from the spec's folder, on a real local Ray and a real MLflow store."""
from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from hpsearch import query
from hpsearch.platform.search import run_search
from hpsearch.search_spaces.spec import load_spec
from hpsearch.trainables import TrainConfig, load_dataset
from hpsearch.trainables.evaluate import evaluate_on_test
from tests.imagefolder_data import NAMES, write_zoo_weights

pytestmark = pytest.mark.e2e

PLUGIN = '''
from torch import nn


def lenet(num_classes, in_channels, image_size, width=6):
    """LeNet-style: two conv blocks, then two linear layers."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * side * side, 64), nn.ReLU(), nn.Linear(64, num_classes))
'''


@pytest.fixture(scope="module")
def own_search(ray_session, digit_folders, tmp_path_factory):
    """One search shared by the tests below: two models on the MNIST PNG tree, streamed."""
    folder = tmp_path_factory.mktemp("own-search")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("TORCH_HOME", str(folder / "torch"))
    write_zoo_weights(folder / "torch", "resnet18")
    (folder / "mynets.py").write_text(textwrap.dedent(PLUGIN))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "own-images",
        "dataset": {"name": "imagefolder", "root": str(digit_folders), "image_size": 28, "channels": 1,
                    "in_memory": False, "workers": 1},
        "search": {"algorithm": "grid", "max_concurrent": 1},
        "resources": {"cpus": 2},
        "train": {"epochs": 3, "lr": 0.003, "batch_size": 32},
        "tracking": {"uri": uri, "experiment": "own"},
        "space": {"model": {"choice": {
            "mynets:lenet": {"width": {"grid": [6, 8]}},
            "torchvision.resnet18": {"pretrained": True, "freeze": "all_but_last_n", "head_lr_multiplier": 5},
        }}},
    }, sort_keys=False))
    spec = load_spec(str(spec_path))
    outcome = run_search(spec, storage=folder / "results")
    yield outcome, spec, uri, folder
    monkeypatch.undo()


def test_a_streamed_search_trains_a_zoo_model_and_a_plugin_model(own_search) -> None:
    outcome, _, uri, _ = own_search
    assert outcome.status == "completed" and outcome.counts["completed"] == 3, outcome.counts
    table = query.trials(outcome.search_id, uri)
    assert sorted(table["params.model"]) == ["mynets:lenet", "mynets:lenet", "torchvision.resnet18"]
    assert sorted(table["params.width"].dropna().astype(int)) == [6, 8]
    # Three epochs on 290 digits: every model learns something (chance is 0.1).
    assert (table["best_val_accuracy"] > 0.2).all(), table[["params.model", "best_val_accuracy"]]


def test_the_parent_run_records_the_data_as_the_search_read_it(own_search) -> None:
    outcome, _, uri, folder = own_search
    client = MlflowClient(uri)
    parent = client.get_run(outcome.parent_run_id)
    params = parent.data.params
    assert params["dataset"] == "imagefolder"
    assert params["dataset.classes"] == "10" and params["dataset.image_shape"] == "1x28x28"
    assert (params["dataset.train_images"], params["dataset.val_images"], params["dataset.test_images"]) == \
        ("290", "70", "40")
    assert params["dataset.in_memory"] == "False" and params["dataset.skipped_files"] == "0"
    recorded = json.loads(Path(client.download_artifacts(outcome.parent_run_id, "dataset.json", str(folder)))
                          .read_text())
    assert recorded["classes"] == sorted(NAMES)
    assert parent.data.tags["hpsearch.spec_dir"] == str(folder)


def test_the_best_trial_is_tested_once_and_its_checkpoint_reproduces_it(own_search, digit_folders) -> None:
    outcome, spec, uri, folder = own_search
    client = MlflowClient(uri)
    best = client.get_run(outcome.best["run_id"])
    logged = {name: best.data.metrics[name] for name in ("test_accuracy", "test_loss")}
    checkpoint = Path(client.download_artifacts(best.info.run_id, "checkpoint", str(folder / "best")))
    config = TrainConfig.model_validate_json((checkpoint / "config.json").read_text())
    weights = torch.load(io.BytesIO((checkpoint / "model.pt").read_bytes()), weights_only=True)
    # The same images decoded into memory, normalized by the statistics the search recorded.
    settings = {key: value for key, value in spec.dataset.model_dump().items() if key != "name"}
    parent = client.get_run(outcome.parent_run_id).data.params
    settings.update(in_memory=True, workers=0, mean=[float(parent["dataset.mean"])], std=[float(parent["dataset.std"])])
    again = evaluate_on_test(config, weights, data=load_dataset("imagefolder", **settings))
    assert again.metrics["test_accuracy"] == pytest.approx(logged["test_accuracy"], abs=1e-9)
    assert again.metrics["test_loss"] == pytest.approx(logged["test_loss"], rel=1e-4)
    assert sum(map(sum, again.confusion)) == 40


def test_the_dashboard_reads_the_search_like_any_other(own_search) -> None:
    from hpsearch.dashboard import data, figures
    from hpsearch.dashboard.source import RunSource

    outcome, _, uri, _ = own_search
    loaded = RunSource(uri).search(outcome.search_id)
    trials = loaded.trials
    assert len(trials) == 3 and set(trials["params.model"]) == {"mynets:lenet", "torchvision.resnet18"}
    assert {"params.model", "params.width"} <= set(data.parameter_columns(trials))
    figure = figures.parallel_coordinates(trials, metric="val_accuracy", mode="max")
    assert len(figure.data[0].dimensions) >= 3
    assert len(data.best_so_far(trials, metric="val_accuracy", mode="max")) == 3


def test_finalize_on_the_png_tree_registers_a_model_whose_predictions_match_its_test_figures(
        own_search, digit_folders, tmp_path) -> None:
    """Finalize the search's winner on train + val, then `predict` the test split's own PNG files."""
    import csv
    import shutil

    from hpsearch.platform.cli import main
    from hpsearch.trainables.images import scan_imagefolder

    outcome, spec, uri, _ = own_search
    assert main(["finalize", outcome.search_id, "--name", "own-digits", "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("own-digits", "candidate")
    final = client.get_run(version.run_id)
    assert final.data.params["model"] == outcome.best["config"]["model"]
    assert len(client.get_metric_history(final.info.run_id, "test_accuracy")) == 1  # tested once
    # The test split as the search drew it, copied out as an ImageFolder tree of its PNG files.
    dataset = spec.dataset
    scan = scan_imagefolder(dataset.root, val_fraction=dataset.val_fraction, test_fraction=dataset.test_fraction,
                            seed=dataset.seed)
    for index in range(len(scan.test)):
        source = Path(scan.test.path(index))
        (tmp_path / source.parent.name).mkdir(exist_ok=True)
        shutil.copy(source, tmp_path / source.parent.name / source.name)
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["predict", "models:/own-digits@candidate", str(tmp_path), "--format", "csv",
                     "--tracking-uri", uri]) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == len(scan.test) == 40
    right = sum(row["class"] == Path(row["path"]).parent.name for row in rows)
    assert right / len(rows) == pytest.approx(final.data.metrics["test_accuracy"], abs=1e-9)
