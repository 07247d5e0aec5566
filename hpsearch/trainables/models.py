"""Model factories: each adapts to the input's shape and the number of classes."""
from __future__ import annotations

import torch
from torch import nn

from hpsearch.trainables.config import MODELS, TrainConfig

InputShape = tuple[int, int, int]


def build_model(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    return MODELS.get(config.model)(config, input_shape=input_shape, num_classes=num_classes)


def list_models() -> list[str]:
    return MODELS.names()


def _flat_size(features: nn.Module, input_shape: InputShape) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


@MODELS.register("mlp")
def mlp(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_shape[0] * input_shape[1] * input_shape[2]
    for hidden in config.hidden_sizes:
        layers.append(nn.Linear(width, hidden, bias=not config.batchnorm))
        if config.batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU(inplace=True))
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


@MODELS.register("cnn")
def cnn(config: TrainConfig, *, input_shape: InputShape, num_classes: int) -> nn.Module:
    """`depth` blocks of conv-(BN)-ReLU, doubling the width and pooling while the image is >= 2 px;
    a global-average-pooling head keeps the classifier small on any image size."""
    in_channels, side, _ = input_shape
    layers: list[nn.Module] = []
    width = config.channels
    for _ in range(config.depth):
        layers += [nn.Conv2d(in_channels, width, config.kernel_size, padding=config.kernel_size // 2,
                             bias=not config.batchnorm),
                   *_norm2d(width, config), nn.ReLU(inplace=True)]
        if side >= 2:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        in_channels, width = width, width * 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(config.dropout),
               nn.Linear(in_channels, num_classes)]
    return nn.Sequential(*layers)


def _norm2d(channels: int, config: TrainConfig) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if config.batchnorm else []
