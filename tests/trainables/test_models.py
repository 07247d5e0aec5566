"""Every registered model on every dataset shape, built from a real TrainConfig, forward and backward."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hpsearch.trainables import MODELS, TrainConfig, build_model, list_models
from hpsearch.trainables.registry import Registry

torch.set_num_threads(1)

NUM_CLASSES = 10
# (channels, height, width) of each dataset hpsearch ships a loader for.
INPUT_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
# Small widths keep the whole matrix (models x shapes x variants) fast on one CPU thread.
SMALL = {"channels": 4, "hidden_sizes": [16]}
VARIANTS = {
    "plain": {},
    "batchnorm+dropout": {"batchnorm": True, "dropout": 0.5},
}


def _build(model: str, shape: tuple[int, int, int], num_classes: int = NUM_CLASSES, **overrides) -> nn.Module:
    config = TrainConfig(model=model, **{**SMALL, **overrides})
    return build_model(config, input_shape=shape, num_classes=num_classes)


# Parametrized over the registry at collection time, so a newly registered model is tested here
# without touching this file.
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dataset", INPUT_SHAPES)
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_and_backward_on_every_dataset_shape(name: str, dataset: str, variant: str) -> None:
    torch.manual_seed(0)
    shape = INPUT_SHAPES[dataset]
    model = _build(name, shape, **VARIANTS[variant])
    model.train()
    inputs = torch.randn(4, *shape)
    targets = torch.tensor([0, 3, 7, 9])

    logits = model(inputs)
    assert logits.shape == (4, NUM_CLASSES)
    assert torch.isfinite(logits).all()

    nn.functional.cross_entropy(logits, targets).backward()
    parameters = dict(model.named_parameters())
    assert parameters, f"{name} has no trainable parameters"
    missing = [pname for pname, parameter in parameters.items() if parameter.grad is None]
    assert not missing, f"{name} on {dataset} ({variant}): no gradient for {missing}"
    non_finite = [pname for pname, parameter in parameters.items() if not torch.isfinite(parameter.grad).all()]
    assert not non_finite, f"{name} on {dataset} ({variant}): non-finite gradient for {non_finite}"


@pytest.mark.parametrize("name", MODELS.names())
def test_num_classes_sets_the_output_width(name: str) -> None:
    model = _build(name, INPUT_SHAPES["digits"], num_classes=3)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("name", MODELS.names())
def test_dropout_is_active_in_train_mode_and_off_in_eval_mode(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name, INPUT_SHAPES["mnist"], dropout=0.5)
    inputs = torch.randn(4, 1, 28, 28)

    model.train()
    assert not torch.equal(model(inputs), model(inputs)), "dropout=0.5 changed nothing in train mode"
    model.eval()
    assert torch.equal(model(inputs), model(inputs))


def _layers_followed_by_batchnorm(model: nn.Module) -> list[tuple[str, nn.Module]]:
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    return [(name, module) for (name, module), (_, following) in zip(leaves, leaves[1:])
            if isinstance(module, (nn.Conv2d, nn.Linear))
            and isinstance(following, (nn.BatchNorm1d, nn.BatchNorm2d))]


@pytest.mark.parametrize("name", MODELS.names())
def test_no_bias_in_front_of_batchnorm(name: str) -> None:
    model = _build(name, INPUT_SHAPES["mnist"], batchnorm=True)
    normalized = _layers_followed_by_batchnorm(model)
    assert normalized, f"{name} with batchnorm=True has no layer followed by batchnorm"
    with_bias = [layer_name for layer_name, layer in normalized if layer.bias is not None]
    assert not with_bias, f"{name}: {with_bias} carry a bias that the following batchnorm cancels"


def _conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    return [module for module in model.modules() if isinstance(module, nn.Conv2d)]


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_cnn_conv_parameter_count_matches_formula(kernel_size: int, batchnorm: bool) -> None:
    channels, depth = 6, 3
    model = _build("cnn", INPUT_SHAPES["cifar10"], channels=channels, depth=depth, kernel_size=kernel_size,
                   batchnorm=batchnorm)
    convs = _conv_layers(model)
    assert len(convs) == depth

    in_channels, out_channels = 3, channels
    for conv in convs:
        weights = in_channels * out_channels * kernel_size * kernel_size
        bias = 0 if batchnorm else out_channels
        assert sum(p.numel() for p in conv.parameters()) == weights + bias
        assert conv.kernel_size == (kernel_size, kernel_size)
        in_channels, out_channels = out_channels, out_channels * 2  # each block doubles the width

    head = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert [(linear.in_features, linear.out_features) for linear in head] == [(channels * 2 ** (depth - 1), 10)]
    batchnorms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    assert [bn.num_features for bn in batchnorms] == ([6, 12, 24] if batchnorm else [])


def test_cnn_deeper_than_the_image_is_halvable_stops_pooling_at_one_pixel() -> None:
    # 8 -> 4 -> 2 -> 1, then a fourth and fifth block on a 1x1 image without pooling.
    model = _build("cnn", INPUT_SHAPES["digits"], depth=5, channels=2)
    assert sum(isinstance(module, nn.MaxPool2d) for module in model.modules()) == 3
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, NUM_CLASSES)


def test_list_models_is_the_registry() -> None:
    assert list_models() == MODELS.names()
    assert {"mlp", "cnn", "lenet5"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("bad_name", ["resnet", "cnnn", "CNN", ""])
def test_unknown_model_name_in_config_lists_known_names(bad_name: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown model '{bad_name}'; known: \[") as raised:
        TrainConfig(model=bad_name)
    for known in MODELS.names():
        assert repr(known) in str(raised.value)


def test_unknown_model_name_suggests_the_close_one() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'lenet5'\?"):
        TrainConfig(model="lenet")


def test_build_model_rejects_an_unknown_name_that_bypassed_validation() -> None:
    config = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "model": "resnet"})
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; known: \[.*'cnn'.*\]"):
        build_model(config, input_shape=(1, 8, 8), num_classes=10)


def test_registering_a_duplicate_model_name_raises_and_keeps_the_original() -> None:
    original = MODELS.get("cnn")
    with pytest.raises(ValueError, match="model 'cnn' is already registered"):
        MODELS.register("cnn")(lambda config, *, input_shape, num_classes: nn.Identity())
    assert MODELS.get("cnn") is original


def test_registry_register_get_and_duplicate() -> None:
    # A fresh registry, so that the shared MODELS is left as the other tests collected it.
    registry: Registry = Registry("widget")

    @registry.register("tiny")
    def tiny() -> str:
        return "tiny"

    assert registry.names() == ["tiny"]
    assert "tiny" in registry and "huge" not in registry
    assert registry.get("tiny") is tiny
    with pytest.raises(ValueError, match="widget 'tiny' is already registered"):
        registry.register("tiny")(lambda: "other")
    assert registry.get("tiny") is tiny
    with pytest.raises(ValueError, match=r"unknown widget 'tin'; known: \['tiny'\] \(did you mean 'tiny'\?\)"):
        registry.get("tin")
