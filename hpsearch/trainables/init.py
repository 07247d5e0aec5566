"""Weight initializations, registered by the name `TrainConfig.init` takes.

Each one sets the weights of every conv and linear layer, zeroes their biases and resets normalization
layers to the identity (weight 1, bias 0). They draw from torch's global generator, so seed it first.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from hpsearch.trainables.config import INITIALIZATIONS

__all__ = ["initialize", "list_initializations"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def initialize(model: nn.Module, name: str) -> None:
    """Apply the initialization registered as `name` to `model`, in place."""
    INITIALIZATIONS.get(name)(model)


def list_initializations() -> list[str]:
    return INITIALIZATIONS.names()


def _apply(model: nn.Module, init_weight: Callable[[nn.Module], None]) -> None:
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            init_weight(module)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS):
            if module.weight is not None:  # None without affine parameters
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@INITIALIZATIONS.register("default")
def default_init(model: nn.Module) -> None:
    """PyTorch's own per-layer defaults."""


@INITIALIZATIONS.register("kaiming")
def kaiming_init(model: nn.Module) -> None:
    """He et al. 2015 for ReLU networks: normal, fan-out for convs (as torchvision's ResNets), fan-in for
    linear layers."""
    def init_weight(module: nn.Module) -> None:
        mode = "fan_in" if isinstance(module, nn.Linear) else "fan_out"
        nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")

    _apply(model, init_weight)


@INITIALIZATIONS.register("xavier")
def xavier_init(model: nn.Module) -> None:
    """Glorot & Bengio 2010, uniform."""
    _apply(model, lambda module: nn.init.xavier_uniform_(module.weight))


@INITIALIZATIONS.register("orthogonal")
def orthogonal_init(model: nn.Module) -> None:
    """Saxe et al. 2014: each weight, flattened to (out, rest), gets orthonormal rows or columns."""
    _apply(model, lambda module: nn.init.orthogonal_(module.weight))
