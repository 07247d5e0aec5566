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


# Models whose activation comes from `config.activation` (lenet5 and resnet18 keep their published ReLU).
WITH_ACTIVATION = ["mlp", "cnn", "vgg", "inception", "resnet"]
ACTIVATION_TYPES = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@pytest.mark.parametrize("activation", ACTIVATION_TYPES)
@pytest.mark.parametrize("name", WITH_ACTIVATION)
def test_every_activation_builds_and_is_the_only_one_used(name: str, activation: str) -> None:
    model = _build(name, INPUT_SHAPES["digits"], activation=activation)
    used = {type(module) for module in model.modules() if type(module) in ACTIVATION_TYPES.values()}
    assert used == {ACTIVATION_TYPES[activation]}
    logits = model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("width_growth", "widths"), [
    (1.0, [4, 4, 4, 4]),
    (1.5, [4, 6, 9, 14]),  # 13.5 rounds to 14
    (2.0, [4, 8, 16, 32]),
    (3.0, [4, 12, 36, 108]),
])
def test_cnn_width_grows_by_width_growth_per_block(width_growth: float, widths: list[int]) -> None:
    model = _build("cnn", INPUT_SHAPES["mnist"], channels=4, depth=4, width_growth=width_growth)
    convs = _conv_layers(model)
    assert [conv.out_channels for conv in convs] == widths
    assert [conv.in_channels for conv in convs] == [1, *widths[:-1]]
    assert model[-1].in_features == widths[-1]


@pytest.mark.parametrize(("pool", "pool_type", "other_type"), [("max", nn.MaxPool2d, nn.AvgPool2d),
                                                                ("avg", nn.AvgPool2d, nn.MaxPool2d)])
def test_cnn_pools_with_the_configured_pool_type(pool: str, pool_type: type, other_type: type) -> None:
    model = _build("cnn", INPUT_SHAPES["cifar10"], depth=3, pool=pool)
    assert sum(isinstance(module, pool_type) for module in model.modules()) == 3
    assert not any(isinstance(module, other_type) for module in model.modules())


@pytest.mark.parametrize(("dataset", "depth", "side"), [("cifar10", 2, 8), ("mnist", 3, 3), ("digits", 4, 1)])
def test_cnn_without_global_pool_flattens_the_final_feature_map(dataset: str, depth: int, side: int) -> None:
    shape = INPUT_SHAPES[dataset]
    model = _build("cnn", shape, channels=4, depth=depth, global_pool=False)
    assert not any(isinstance(module, nn.AdaptiveAvgPool2d) for module in model.modules())
    final_width = 4 * 2 ** (depth - 1)
    assert model[-1].in_features == final_width * side * side
    assert model(torch.randn(2, *shape)).shape == (2, NUM_CLASSES)


def test_cnn_with_global_pool_averages_to_one_value_per_channel() -> None:
    model = _build("cnn", INPUT_SHAPES["cifar10"], channels=4, depth=2, global_pool=True)
    assert sum(isinstance(module, nn.AdaptiveAvgPool2d) for module in model.modules()) == 1
    assert model[-1].in_features == 8


@pytest.mark.parametrize("batchnorm", [False, True])
def test_vgg_conv_parameter_count_matches_formula(batchnorm: bool) -> None:
    channels, depth = 3, 3
    model = _build("vgg", INPUT_SHAPES["cifar10"], channels=channels, depth=depth, batchnorm=batchnorm)
    convs = _conv_layers(model)
    assert len(convs) == 2 * depth  # two 3x3 convs per stage

    in_channels = 3
    for stage in range(depth):
        width = channels * 2 ** stage
        for conv in convs[2 * stage: 2 * stage + 2]:
            bias = 0 if batchnorm else width
            assert sum(p.numel() for p in conv.parameters()) == in_channels * width * 3 * 3 + bias
            assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
            in_channels = width
    assert sum(isinstance(module, nn.MaxPool2d) for module in model.modules()) == depth
    assert model[-1].in_features == channels * 2 ** (depth - 1)
    assert any(isinstance(module, nn.Dropout) for module in model.modules())


def test_vgg_deeper_than_the_image_is_halvable_stops_pooling_at_one_pixel() -> None:
    model = _build("vgg", INPUT_SHAPES["digits"], depth=5, channels=2)
    assert sum(isinstance(module, nn.MaxPool2d) for module in model.modules()) == 3  # 8 -> 4 -> 2 -> 1
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, NUM_CLASSES)


def _projections(model: nn.Module) -> list[nn.Conv2d]:
    return [conv for conv in _conv_layers(model) if conv.kernel_size == (1, 1)]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resnet_projection_shortcut_parameter_count_matches_formula(batchnorm: bool) -> None:
    channels, depth = 4, 2
    model = _build("resnet", INPUT_SHAPES["cifar10"], channels=channels, depth=depth, batchnorm=batchnorm)
    # 1x1 projections only where a stage widens the blocks; all other shortcuts are the identity.
    projections = _projections(model)
    assert [(conv.in_channels, conv.out_channels, conv.stride) for conv in projections] == [
        (channels, 2 * channels, (2, 2)), (2 * channels, 4 * channels, (2, 2))]
    for conv in projections:
        bias = 0 if batchnorm else conv.out_channels
        assert sum(p.numel() for p in conv.parameters()) == conv.in_channels * conv.out_channels + bias
    identities = [module for module in model.modules() if getattr(module, "shortcut", None) is not None
                  and isinstance(module.shortcut, nn.Identity)]
    assert len(identities) == 3 * depth - 2
    assert len(_conv_layers(model)) == 1 + 3 * depth * 2 + 2  # stem, two per block, projections
    batchnorms = sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())
    assert batchnorms == (len(_conv_layers(model)) if batchnorm else 0)
    assert model[-1].in_features == 4 * channels


def test_resnet_on_an_image_too_small_to_halve_projects_without_striding() -> None:
    model = _build("resnet", (1, 2, 2), channels=2, depth=1)
    assert [conv.stride for conv in _projections(model)] == [(2, 2), (1, 1)]  # 2 px -> 1 px, then no stride
    assert model(torch.randn(2, 1, 2, 2)).shape == (2, NUM_CLASSES)


def test_inception_blocks_concatenate_four_branches_with_bottlenecks() -> None:
    channels, depth = 4, 2
    model = _build("inception", INPUT_SHAPES["mnist"], channels=channels, depth=depth)
    assert model[-1].in_features == 4 * channels * 2 ** (depth - 1)  # four branches of the last block's width
    one_by_one = _projections(model)
    assert len(one_by_one) == 4 * depth  # one per branch
    bottlenecks = [conv.out_channels for conv in one_by_one if conv.out_channels < conv.in_channels]
    assert bottlenecks, "no 1x1 conv reduces the channels"
    kernels = sorted({conv.kernel_size for conv in _conv_layers(model)})
    assert kernels == [(1, 1), (3, 3)]
    assert sum(isinstance(module, nn.MaxPool2d) and module.stride == 2 for module in model.modules()) == depth - 1


def test_resnet18_is_adapted_to_small_images() -> None:
    model = _build("resnet18", INPUT_SHAPES["cifar10"])
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (3, (3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert _build("resnet18", INPUT_SHAPES["mnist"]).conv1.in_channels == 1


@pytest.mark.parametrize("name", sorted(set(MODELS.names()) - {"resnet18"}))  # torchvision's always normalizes
def test_batchnorm_false_means_no_batchnorm(name: str) -> None:
    model = _build(name, INPUT_SHAPES["mnist"], batchnorm=False)
    assert not any(isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) for module in model.modules())


@pytest.mark.parametrize("name", MODELS.names())
def test_building_leaves_batchnorm_statistics_untouched(name: str) -> None:
    # Sizing a classifier runs the features once; that must not count as a training batch.
    model = _build(name, INPUT_SHAPES["mnist"], batchnorm=True)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert int(module.num_batches_tracked) == 0
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))
    assert model.training


def test_list_models_is_the_registry() -> None:
    assert list_models() == MODELS.names()
    assert {"mlp", "cnn", "lenet5", "vgg", "inception", "resnet", "resnet18"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("bad_name", ["resnet34", "cnnn", "CNN", ""])
def test_unknown_model_name_in_config_lists_known_names(bad_name: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown model '{bad_name}'; known: \[") as raised:
        TrainConfig(model=bad_name)
    for known in MODELS.names():
        assert repr(known) in str(raised.value)


def test_unknown_model_name_suggests_the_close_one() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'lenet5'\?"):
        TrainConfig(model="lenet")


def test_build_model_rejects_an_unknown_name_that_bypassed_validation() -> None:
    config = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "model": "resnet34"})
    with pytest.raises(ValueError, match=r"unknown model 'resnet34'; known: \[.*'cnn'.*\]"):
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
