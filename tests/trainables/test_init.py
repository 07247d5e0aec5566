"""Weight initializations: registered by name, deterministic under a seed, with the distributions they promise."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hpsearch.trainables import INITIALIZATIONS, MODELS, TrainConfig, build_model
from hpsearch.trainables.init import initialize, list_initializations

torch.set_num_threads(1)

SCHEMES = ["kaiming", "xavier", "orthogonal"]
SMALL = {"channels": 4, "hidden_sizes": [16]}


def _build(model: str, **overrides) -> nn.Module:
    config = TrainConfig(model=model, **{**SMALL, **overrides})
    return build_model(config, input_shape=(1, 8, 8), num_classes=10)


def _initialized(model: str, scheme: str, *, seed: int, **overrides) -> nn.Module:
    torch.manual_seed(0)  # the same default weights every time; only the initialization's seed varies
    network = _build(model, **overrides)
    torch.manual_seed(seed)
    initialize(network, scheme)
    return network


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
            if name.endswith("weight")}


def _layers(model: nn.Module, kinds: tuple[type, ...]) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kinds)]


def test_the_documented_initializations_are_registered() -> None:
    assert {"default", *SCHEMES} <= set(INITIALIZATIONS.names())
    assert list_initializations() == INITIALIZATIONS.names()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
def test_initialization_changes_weights_deterministically_under_a_seed(model: str, scheme: str) -> None:
    torch.manual_seed(0)
    defaults = _weights(_build(model))
    first = _weights(_initialized(model, scheme, seed=1))
    again = _weights(_initialized(model, scheme, seed=1))
    other_seed = _weights(_initialized(model, scheme, seed=2))

    assert first.keys() == again.keys() == defaults.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], defaults[name]) for name in first), f"{scheme} changed no weight"
    assert any(not torch.equal(first[name], other_seed[name]) for name in first), "the seed made no difference"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_biases_are_zero_and_batchnorm_is_the_identity(scheme: str) -> None:
    torch.manual_seed(0)
    model = _build("resnet", batchnorm=True)
    model.append(nn.BatchNorm1d(10))  # a 1-d norm and the head's linear bias as well
    for norm in _layers(model, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.constant_(norm.weight, 0.5)
        nn.init.constant_(norm.bias, 0.5)
    initialize(model, scheme)

    biased = [layer for layer in _layers(model, (nn.Conv2d, nn.Linear)) if layer.bias is not None]
    assert biased, "the model has no bias to check"
    assert all(not layer.bias.any() for layer in biased)
    norms = _layers(model, (nn.BatchNorm1d, nn.BatchNorm2d))
    assert norms and all(bool((norm.weight == 1).all()) and not norm.bias.any() for norm in norms)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_conv_biases_are_zero_without_batchnorm(scheme: str) -> None:
    model = _initialized("cnn", scheme, seed=0, batchnorm=False)
    convs = _layers(model, (nn.Conv2d,))
    assert convs and all(conv.bias is not None and not conv.bias.any() for conv in convs)


def test_default_initialization_leaves_pytorch_defaults() -> None:
    torch.manual_seed(0)
    model = _build("cnn")
    before = _weights(model)
    biases = [conv.bias.detach().clone() for conv in _layers(model, (nn.Conv2d,))]
    initialize(model, "default")
    assert all(torch.equal(before[name], after) for name, after in _weights(model).items())
    assert any(bias.any() for bias in biases)  # PyTorch's default biases are not zero, and stay so
    assert all(torch.equal(bias, conv.bias) for bias, conv in zip(biases, _layers(model, (nn.Conv2d,))))


@pytest.mark.parametrize(("in_features", "out_features"), [(16, 16), (64, 8)])
def test_orthogonal_gives_orthonormal_rows(in_features: int, out_features: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(in_features, out_features))
    initialize(model, "orthogonal")
    weight = model[0].weight.detach()
    torch.testing.assert_close(weight @ weight.T, torch.eye(out_features), atol=1e-5, rtol=0)


def test_orthogonal_square_weight_is_orthogonal_both_ways() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32))
    initialize(model, "orthogonal")
    weight = model[0].weight.detach()
    torch.testing.assert_close(weight.T @ weight, torch.eye(32), atol=1e-5, rtol=0)


def test_kaiming_uses_fan_out_for_convs_and_fan_in_for_linear_layers() -> None:
    torch.manual_seed(0)
    conv, linear = nn.Conv2d(64, 128, 3), nn.Linear(1024, 256)
    initialize(nn.Sequential(conv, nn.Flatten(), linear), "kaiming")
    conv_std = math.sqrt(2 / (128 * 3 * 3))  # gain sqrt(2) for ReLU over sqrt(fan_out)
    linear_std = math.sqrt(2 / 1024)  # over sqrt(fan_in)
    assert conv.weight.std().item() == pytest.approx(conv_std, rel=0.03)
    assert linear.weight.std().item() == pytest.approx(linear_std, rel=0.03)
    assert conv.weight.mean().item() == pytest.approx(0, abs=conv_std / 20)


def test_xavier_is_uniform_within_the_glorot_bound() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(300, 200)
    initialize(nn.Sequential(linear), "xavier")
    bound = math.sqrt(6 / (300 + 200))
    assert linear.weight.abs().max().item() <= bound
    assert linear.weight.abs().max().item() == pytest.approx(bound, rel=0.01)
    assert linear.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)  # a uniform's std


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("model", MODELS.names())
def test_every_model_trains_forward_after_every_initialization(model: str, scheme: str) -> None:
    network = _initialized(model, scheme, seed=0, batchnorm=True)
    logits = network(torch.randn(4, 1, 8, 8))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("bad_name", ["he", "Kaiming", "xavier_normal", ""])
def test_unknown_initialization_raises_with_the_known_list(bad_name: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown initialization '{bad_name}'; known: \[") as raised:
        initialize(nn.Linear(2, 2), bad_name)
    for known in INITIALIZATIONS.names():
        assert repr(known) in str(raised.value)


def test_unknown_initialization_suggests_the_close_one() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'orthogonal'\?"):
        initialize(nn.Linear(2, 2), "orthogonl")


def test_config_rejects_an_unknown_initialization() -> None:
    with pytest.raises(ValueError, match=r"init\n.*unknown initialization 'glorot'; known: \[.*'xavier'"):
        TrainConfig(init="glorot")
