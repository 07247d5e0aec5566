"""Weight initializations."""
from __future__ import annotations

from torch import nn

from hpsearch.trainables.config import INITIALIZATIONS


@INITIALIZATIONS.register("default")
def default_init(model: nn.Module) -> None:
    """PyTorch's own per-layer defaults."""
