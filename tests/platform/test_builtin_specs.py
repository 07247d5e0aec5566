"""Every built-in spec validates, and the MNIST one runs on the real MNIST files."""
from __future__ import annotations

import pytest

from hpsearch import query

from hpsearch.platform.search import planned_trials, run_search
from hpsearch.search_spaces.spec import builtin_specs, load_spec
from tests.conftest import shared_mnist_root
from tests.imagefolder_data import write_sklearn_digits_tree, write_zoo_weights


@pytest.mark.parametrize("name", builtin_specs())
def test_builtin_spec_validates(name, tmp_path, monkeypatch):
    overrides = []
    if name == "imagefolder-finetune":  # your own images, and torchvision's weights on disk
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        write_zoo_weights(tmp_path / "torch", "resnet18", "mobilenet_v3_small")
        overrides = [f"dataset.root={write_sklearn_digits_tree(tmp_path / 'images', per_class=6, rgb=True)}"]
    spec = load_spec(name, overrides=overrides)
    assert spec.name == name and planned_trials(spec) >= 8
    assert any(param.branches for param in spec.space.params), "built-in specs show off a conditional space"


def test_digits_quick_is_the_small_default():
    spec = load_spec("digits-quick")
    assert spec.dataset.name == "digits" and spec.resources.gpus == 0


MNIST_RUNS = {
    # Two short trials each, with the settings that make one epoch meaningful.
    "mnist-bayes": (["search.scheduler.name=none", "space.optimizer=adam", "train.lr=0.003", "space.augment=none"],
                    {"lenet5", "cnn"}),
    "mnist-recipe": (["search.scheduler.name=none", "space.warmup_epochs=0", "space.optimizer=adamw",
                      "train.lr=0.003",
                      "space.ema_decay=0.9", "space.prune_amount=0.5", "space.augment=trivialaugment",
                      "space.mixup_alpha=0.2", "space.cutmix_alpha=1.0", "space.random_erasing=0.25"], {"cnn"}),
    "mnist-pareto": (["space.model.choice.mlp.hidden_sizes=[32]", "space.model.choice.cnn.channels=8",
                      "space.optimizer=adam", "space.lr=0.003", "space.weight_decay=0", "space.dropout=0"],
                     {"mlp", "cnn"}),
    "mnist-arch": (["space.lr=0.003", "space.model.choice.resnet.channels=8", "space.model.choice.resnet.depth=1"],
                   {"mlp", "lenet5", "cnn", "resnet"}),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(MNIST_RUNS))
def test_mnist_specs_run_on_the_real_mnist_files(ray_session, tracking_uri, tmp_path, name):
    root = shared_mnist_root()
    overrides, models = MNIST_RUNS[name]
    spec = load_spec(name, tracking_uri=tracking_uri, overrides=[
        f"dataset.root={root}", "dataset.download=false", "search.num_samples=2", "train.epochs=1", *overrides])
    outcome = run_search(spec, storage=tmp_path / "results")
    assert outcome.counts["completed"] == 2
    assert outcome.best["value"] > 0.8  # one epoch on 7,200 real MNIST digits
    runs = query.trials(outcome.parent_run_id, tracking_uri)
    assert len(runs) == 2 and set(runs.get("params.model", [spec.train.model] * 2)) <= models
    if name == "mnist-pareto":  # both under the constraint, trained; the front is read back with its costs
        front = query.pareto(outcome.search_id, tracking_uri)
        assert len(front) >= 1 and set(front["run_id"]) <= set(runs["run_id"]) and (front["latency_batch_ms"] > 0).all()
    if name == "mnist-recipe":  # every knob on: the models are pruned to the asked sparsity when saved
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        assert [client.get_run(run_id).data.metrics["sparsity"] for run_id in runs["run_id"]] == \
            pytest.approx([0.5, 0.5], abs=1e-3)
