"""Optimizer factories."""
from __future__ import annotations

from typing import Iterable

import torch

from hpsearch.trainables.config import OPTIMIZERS, TrainConfig


def build_optimizer(config: TrainConfig, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(config.optimizer)(config, parameters)


def list_optimizers() -> list[str]:
    return OPTIMIZERS.names()


@OPTIMIZERS.register("sgd")
def sgd(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0,
                           weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def adam(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
