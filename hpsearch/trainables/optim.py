"""Optimizer factories, registered by name, all built at the effective learning rate."""
from __future__ import annotations

from typing import Iterable

import torch

from hpsearch.trainables.config import OPTIMIZERS, TrainConfig

LR_SCALING_BATCH_SIZE = 256  # with lr_scaling, the configured lr is per this many examples


def effective_lr(config: TrainConfig) -> float:
    """The learning rate the optimizer starts from: with `lr_scaling` the configured lr is per 256
    examples and grows linearly with the batch size (Goyal et al. 2017); otherwise it is used as is."""
    if config.lr_scaling:
        return config.lr * config.batch_size / LR_SCALING_BATCH_SIZE
    return config.lr


def build_optimizer(config: TrainConfig, parameters: Iterable[torch.nn.Parameter] | list[dict]) -> torch.optim.Optimizer:
    """The optimizer `config` names over `parameters`, or over parameter groups where a group's
    `lr_multiplier` scales its learning rate (a fine-tuned model's new head)."""
    lr = effective_lr(config)
    optimizer = OPTIMIZERS.get(config.optimizer)(config, parameters, lr=lr)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_multiplier", 1.0)
    return optimizer


def list_optimizers() -> list[str]:
    return OPTIMIZERS.names()


@OPTIMIZERS.register("sgd")
def sgd(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
    # torch refuses Nesterov without momentum; a search sampling both gets plain SGD there.
    return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0,
                           weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def adam(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
    # weight_decay here is an L2 term added to the gradient; adamw decouples it.
    return torch.optim.Adam(parameters, lr=lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
    # Passed explicitly: torch's AdamW defaults to weight_decay=0.01, the config to none.
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adagrad")
def adagrad(config: TrainConfig, parameters: Iterable[torch.nn.Parameter], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(parameters, lr=lr, weight_decay=config.weight_decay)
