"""Model factories: each adapts to the input's shape and the number of classes.

Every factory takes `(config, *, input_shape, num_classes)` and reads only `TrainConfig` fields, so a
new architecture is one registered function and the model tests pick it up.
"""
from __future__ import annotations

import torch
from torch import nn

from hpsearch.trainables.config import MODELS, TrainConfig

InputShape = tuple[int, int, int]

# Activations that are safe in place (their backward needs only their output or nothing).
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
_IN_PLACE = {"relu", "silu"}
_POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def build_model(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """The model `config.model` names, with `config.freeze` applied."""
    from hpsearch.trainables import zoo
    from hpsearch.trainables.plugins import is_factory

    if config.pretrained and not config.model.startswith(zoo.ZOOS_PREFIXES):
        raise ValueError(zoo.NO_WEIGHTS.format(model=config.model))
    if config.model in MODELS:
        model = MODELS.get(config.model)(config, input_shape=input_shape, num_classes=num_classes)
    elif is_factory(config.model):
        model = zoo.build_plugin_model(config, input_shape=input_shape, num_classes=num_classes)
    elif zoo.model_problem(config.model):
        raise ValueError(zoo.model_problem(config.model))
    else:
        model = zoo.build_zoo_model(config, input_shape=input_shape, num_classes=num_classes)
    freeze(model, config)
    return model


def list_models(*, zoo: bool = False) -> list[str]:
    """hpsearch's own models; with `zoo`, torchvision's classification models too (and timm's, if installed)."""
    if not zoo:
        return MODELS.names()
    from hpsearch.trainables.zoo import list_zoo_models

    return MODELS.names() + list_zoo_models()


def is_pretrained(config: TrainConfig) -> bool:
    return config.pretrained


def head_name(model: nn.Module) -> str:
    """The classifier head: the module a zoo model marks, else the last Linear layer."""
    from hpsearch.trainables.zoo import HEAD_ATTRIBUTE

    marked = getattr(model, HEAD_ATTRIBUTE, None)
    if marked:
        return marked
    return next((name for name, module in reversed(list(model.named_modules())) if isinstance(module, nn.Linear)), "")


def _head_parameters(model: nn.Module) -> set[int]:
    name = head_name(model)
    if not name:
        return set()
    return {id(parameter) for parameter in model.get_submodule(name).parameters()}


def freeze(model: nn.Module, config: TrainConfig) -> None:
    """`backbone`: only the head trains; `all_but_last_n`: only the last `unfrozen_blocks` of the
    model's top-level parts that hold parameters (the head among them) train."""
    if config.freeze == "none":
        return
    if config.freeze == "backbone":
        head = _head_parameters(model)
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in head)
        return
    blocks = [module for _, module in model.named_children() if any(True for _ in module.parameters())]
    trained = {id(p) for module in blocks[-config.unfrozen_blocks:] for p in module.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trained)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The trainable parameters, the head in a group of its own at `head_lr_multiplier` times the lr."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.head_lr_multiplier == 1.0:
        return [{"params": trainable}]
    head = _head_parameters(model)
    body = [parameter for parameter in trainable if id(parameter) not in head]
    groups = [{"params": body}] if body else []
    head_params = [parameter for parameter in trainable if id(parameter) in head]
    if head_params:
        groups.append({"params": head_params, "lr_multiplier": config.head_lr_multiplier})
    return groups


# ----------------------------------------------------------------------------------------------- helpers

def _activation(config: TrainConfig) -> nn.Module:
    if config.activation not in _ACTIVATIONS:
        raise ValueError(f"activation: {config.activation!r} is not one of {list(_ACTIVATIONS)}")
    if config.activation in _IN_PLACE:
        return _ACTIVATIONS[config.activation](inplace=True)
    return _ACTIVATIONS[config.activation]()


def _pool(config: TrainConfig, kernel_size: int = 2, stride: int | None = None, padding: int = 0) -> nn.Module:
    if config.pool not in _POOLS:
        raise ValueError(f"pool: {config.pool!r} is not one of {list(_POOLS)}")
    return _POOLS[config.pool](kernel_size, stride=stride, padding=padding)


def _norm2d(channels: int, config: TrainConfig) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if config.batchnorm else []


def _conv_unit(in_channels: int, out_channels: int, config: TrainConfig, *, kernel_size: int = 3,
               stride: int = 1, activation: bool = True) -> list[nn.Module]:
    """Conv, BatchNorm when `config.batchnorm`, then the activation; 'same' padding for odd kernels."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                     bias=not config.batchnorm)  # BatchNorm's shift makes a conv bias redundant
    return [conv, *_norm2d(out_channels, config), *([_activation(config)] if activation else [])]


def _flat_size(features: nn.Module, input_shape: InputShape) -> int:
    """Output size of `features` on one image; eval mode so BatchNorm's running statistics stay untouched."""
    was_training = features.training
    features.eval()
    with torch.no_grad():
        size = int(features(torch.zeros(1, *input_shape)).numel())
    features.train(was_training)
    return size


def _classifier(features: list[nn.Module], config: TrainConfig, *, input_shape: InputShape,
                num_classes: int) -> nn.Sequential:
    """`features`, then global average pooling (or, without `global_pool`, the whole flattened map),
    dropout and one linear layer."""
    body = nn.Sequential(*features, *([nn.AdaptiveAvgPool2d(1)] if config.global_pool else []), nn.Flatten())
    flat = _flat_size(body, input_shape)
    return nn.Sequential(*body, nn.Dropout(config.dropout), nn.Linear(flat, num_classes))


# ------------------------------------------------------------------------------------------------ models

@MODELS.register("mlp")
def mlp(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_shape[0] * input_shape[1] * input_shape[2]
    for hidden in config.hidden_sizes:
        layers.append(nn.Linear(width, hidden, bias=not config.batchnorm))
        if config.batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(_activation(config))
        if config.dropout:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("lenet5")
def lenet5(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """LeCun et al. 1998 with ReLU and max pooling; the second conv is padded on small images."""
    channels, height, _ = input_shape
    second_padding = 0 if height >= 16 else 2
    bias = not config.batchnorm  # BatchNorm's shift makes a conv bias redundant
    features = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2, bias=bias), *_norm2d(6, config), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=second_padding, bias=bias), *_norm2d(16, config), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(),
    )
    flat = _flat_size(features, input_shape)
    return nn.Sequential(
        features,
        nn.Linear(flat, 120), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
        nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
        nn.Linear(84, num_classes),
    )


def _cnn_widths(config: TrainConfig) -> list[int]:
    """Filters of each `cnn` block: `channels * width_growth**block`, rounded."""
    return [max(1, round(config.channels * config.width_growth ** block)) for block in range(config.depth)]


@MODELS.register("cnn")
def cnn(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """`depth` blocks of conv-(BN)-activation, growing the width by `width_growth` and pooling while the
    image is >= 2 px; the global-average-pooling head keeps the classifier small on any image size."""
    in_channels, side = input_shape[0], min(input_shape[1:])
    layers: list[nn.Module] = []
    for width in _cnn_widths(config):
        layers += _conv_unit(in_channels, width, config, kernel_size=config.kernel_size)
        if side >= 2:
            layers.append(_pool(config))
            side //= 2
        in_channels = width
    return _classifier(layers, config, input_shape=input_shape, num_classes=num_classes)


@MODELS.register("vgg")
def vgg(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """Simonyan & Zisserman 2015, small: `depth` stages of two 3x3 conv-(BN)-activation units, stage
    `s` with `channels * 2**s` filters, each stage pooled while the image is >= 2 px."""
    in_channels, side = input_shape[0], min(input_shape[1:])
    layers: list[nn.Module] = []
    for stage in range(config.depth):
        width = config.channels * 2 ** stage
        layers += [*_conv_unit(in_channels, width, config), *_conv_unit(width, width, config)]
        if side >= 2:
            layers.append(_pool(config))
            side //= 2
        in_channels = width
    return _classifier(layers, config, input_shape=input_shape, num_classes=num_classes)


class InceptionBlock(nn.Module):
    """Four parallel branches of `width` filters each, concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3
    (a 5x5's receptive field, Szegedy et al. 2016); 3x3 pool -> 1x1. The 1x1s bottleneck to width/2."""

    def __init__(self, in_channels: int, width: int, config: TrainConfig) -> None:
        super().__init__()
        bottleneck = max(1, width // 2)
        self.branches = nn.ModuleList([
            nn.Sequential(*_conv_unit(in_channels, width, config, kernel_size=1)),
            nn.Sequential(*_conv_unit(in_channels, bottleneck, config, kernel_size=1),
                          *_conv_unit(bottleneck, width, config)),
            nn.Sequential(*_conv_unit(in_channels, bottleneck, config, kernel_size=1),
                          *_conv_unit(bottleneck, width, config), *_conv_unit(width, width, config)),
            nn.Sequential(_pool(config, kernel_size=3, stride=1, padding=1),
                          *_conv_unit(in_channels, width, config, kernel_size=1)),
        ])
        self.out_channels = 4 * width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(inputs) for branch in self.branches], dim=1)


@MODELS.register("inception")
def inception(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """A 3x3 stem of `channels` filters, then `depth` inception blocks whose branches have
    `channels * 2**block` filters, pooled between blocks while the image is >= 2 px."""
    side = min(input_shape[1:])
    layers: list[nn.Module] = _conv_unit(input_shape[0], config.channels, config)
    in_channels = config.channels
    for block in range(config.depth):
        if block and side >= 2:
            layers.append(_pool(config))
            side //= 2
        layers.append(InceptionBlock(in_channels, config.channels * 2 ** block, config))
        in_channels = layers[-1].out_channels
    return _classifier(layers, config, input_shape=input_shape, num_classes=num_classes)


class BasicBlock(nn.Module):
    """He et al. 2016: two 3x3 conv-(BN) units and a shortcut, identity when shapes match, else a strided
    1x1 conv-(BN) projection; the activation follows the sum."""

    def __init__(self, in_channels: int, out_channels: int, config: TrainConfig, *, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(*_conv_unit(in_channels, out_channels, config, stride=stride),
                                      *_conv_unit(out_channels, out_channels, config, activation=False))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(*_conv_unit(in_channels, out_channels, config, kernel_size=1,
                                                      stride=stride, activation=False))
        self.activation = _activation(config)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(self.residual(inputs) + self.shortcut(inputs))


@MODELS.register("resnet")
def resnet(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """A CIFAR-style ResNet: a 3x3 stem, three stages of `depth` basic blocks with `channels`,
    2*`channels` and 4*`channels` filters, the later stages entered with stride 2 while the image is >= 2 px."""
    side = min(input_shape[1:])
    layers: list[nn.Module] = _conv_unit(input_shape[0], config.channels, config)
    in_channels = config.channels
    for stage in range(3):
        width = config.channels * 2 ** stage
        for block in range(config.depth):
            stride = 2 if stage and not block and side >= 2 else 1
            if stride == 2:
                side = (side + 1) // 2  # a padded 3x3 conv with stride 2 rounds up
            layers.append(BasicBlock(in_channels, width, config, stride=stride))
            in_channels = width
    return _classifier(layers, config, input_shape=input_shape, num_classes=num_classes)


@MODELS.register("resnet18")
def resnet18(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (untrained) for small images: a 3x3 stride-1 first conv and no max pooling,
    so that an 8 px image still reaches the last stage. Widths, BatchNorm and ReLU are torchvision's."""
    import torchvision  # here: importing it costs every trial worker most of a second at start-up

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's own
    model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(config.dropout), model.fc)
    return model
