"""Global magnitude pruning of conv and linear weights with torch.nn.utils.prune, one-shot or gradual.

`prune_amount` of the prunable weights (the trainable weights of conv and linear layers), those
smallest in magnitude across the whole model, are set to zero (global L1 unstructured pruning):

- `one_shot`: all at once, after the last epoch's training and before its validation (no retraining);
- `gradual`: at the start of each of the last third of the epochs, the share pruned rising on Zhu &
  Gupta's (2017) cubic schedule to `prune_amount` at the start of the last epoch, which then trains
  at that sparsity.

Each step is made permanent at once (`prune.remove`): the model keeps plain `weight` parameters (the
same objects, so the optimizer keeps its state), and its state dict loads into an unpruned model.
The masks stay with the `Pruner`, which keeps pruned weights at zero while training goes on (no
gradient, zeroed after each optimizer step), and are part of a session's saved state.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

PRUNABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
SCHEDULES = ("one_shot", "gradual")


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """The conv and linear layers whose weight trains, in the model's order (frozen ones are left whole)."""
    return [module for module in model.modules() if isinstance(module, PRUNABLE_LAYERS)
            and isinstance(getattr(module, "weight", None), nn.Parameter) and module.weight.requires_grad]


def prunable_count(model: nn.Module) -> int:
    return sum(layer.weight.numel() for layer in prunable_layers(model))


def planned_pruned(model: nn.Module, amount: float) -> int:
    """Weights that pruning `amount` of `model`'s prunable weights sets to zero: known before training."""
    return round(amount * prunable_count(model))


def sparsity(model: nn.Module) -> float:
    """The share of `model`'s prunable weights that are zero."""
    layers = prunable_layers(model)
    total = sum(layer.weight.numel() for layer in layers)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    return zeros / total if total else 0.0


def gradual_epochs(epochs: int) -> int:
    """The epochs gradual pruning spreads over: the last third, at least one."""
    return max(1, math.ceil(epochs / 3))


class Pruner:
    """Prunes `model` on its schedule as the session's epochs go; `companion` (the EMA copy of the model)
    has the same weights pruned."""

    def __init__(self, model: nn.Module, *, amount: float, schedule: str, epochs: int,
                 companion: nn.Module | None = None) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"prune_schedule: {schedule!r} is not one of {list(SCHEDULES)}")
        self.amount, self.schedule, self.epochs = amount, schedule, epochs
        self._layers = prunable_layers(model)
        self._companions = prunable_layers(companion) if companion is not None else []
        self.total = sum(layer.weight.numel() for layer in self._layers)
        self.target = round(amount * self.total)  # weights pruned once every step has run
        self.masks: list[torch.Tensor] | None = None  # bool, per layer: False where pruned

    @property
    def pruned(self) -> int:
        return 0 if self.masks is None else sum(int((~mask).sum()) for mask in self.masks)

    @property
    def done(self) -> bool:
        """Whether every planned pruning step has run."""
        return self.pruned >= self.target

    def start_epoch(self, epoch: int) -> None:
        """Before epoch `epoch` (counted from 1) trains: a gradual step when it is one of the last third."""
        if self.schedule != "gradual":
            return
        steps = gradual_epochs(self.epochs)
        step = epoch - (self.epochs - steps)
        if 1 <= step <= steps:
            share = self.amount * (1 - (1 - step / steps) ** 3)
            self.prune_to(self.target if step == steps else round(share * self.total))

    def end_epoch(self, epoch: int) -> None:
        """After epoch `epoch` trained, before it is validated: the one-shot step after the last one."""
        if self.schedule == "one_shot" and epoch >= self.epochs:
            self.prune_to(self.target)

    @torch.no_grad()
    def prune_to(self, count: int) -> None:
        """Prune, globally by magnitude, until `count` weights are pruned; pruned weights stay pruned."""
        new = min(count, self.total) - self.pruned
        if new <= 0:
            return
        from torch.nn.utils import prune

        layers = self._layers
        orders = [list(layer._parameters) for layer in layers]
        formats = [_memory_format(layer.weight) for layer in layers]
        for layer in layers:  # prune flattens the weights with view(-1): channels_last ones would not
            layer.weight.data = layer.weight.data.contiguous()
        if self.masks is not None:
            for layer, mask in zip(layers, self.masks):
                prune.custom_from_mask(layer, "weight", mask)
        prune.global_unstructured([(layer, "weight") for layer in layers], pruning_method=prune.L1Unstructured,
                                  amount=new)
        self.masks = [layer.weight_mask.bool() for layer in layers]
        for layer, order, memory_format in zip(layers, orders, formats):
            prune.remove(layer, "weight")
            for name in order:  # remove re-registers the weight last; EMA updates pair parameters in order
                layer._parameters[name] = layer._parameters.pop(name)
            layer.weight.data = layer.weight.data.contiguous(memory_format=memory_format)
        for companion, mask in zip(self._companions, self.masks):
            companion.weight.mul_(mask)

    def mask_gradients(self) -> None:
        """Pruned weights get no gradient (as under prune's reparametrization), so clipping ignores them."""
        for layer, mask in zip(self._layers, self.masks or ()):
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(mask)

    @torch.no_grad()
    def enforce(self) -> None:
        """Zero the pruned weights again after an optimizer step (momentum or weight decay moves them)."""
        for layer, mask in zip(self._layers, self.masks or ()):
            layer.weight.mul_(mask)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        masks = state["masks"]
        self.masks = None if masks is None else [mask.to(layer.weight.device, torch.bool)
                                                 for mask, layer in zip(masks, self._layers)]


def _memory_format(weight: torch.Tensor) -> torch.memory_format:
    if weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
