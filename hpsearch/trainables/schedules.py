"""Learning-rate schedules the training loop drives, after every batch and after every epoch.

Each registered schedule builds torch schedulers on the optimizer and says how often they step;
`build_schedule` adds the optional linear warmup and wraps the result in an `LrSchedule`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch
from torch.optim.lr_scheduler import (CosineAnnealingLR, LinearLR, LRScheduler, OneCycleLR, ReduceLROnPlateau,
                                      SequentialLR, StepLR)

from hpsearch.trainables.config import SCHEDULES, TrainConfig

WARMUP_START_FACTOR = 0.1  # warmup starts at this fraction of the base lr
PLATEAU_PATIENCE = 1  # epochs without improvement that ReduceLROnPlateau tolerates before decaying


@dataclass(frozen=True)
class Stepped:
    """A torch scheduler and how often the training loop steps it."""

    scheduler: LRScheduler
    every: Literal["batch", "epoch"]


class LrSchedule:
    """The learning rate of one trial: call `after_batch()` after every `optimizer.step()` and
    `after_epoch(val_loss)` once per epoch, after validation. Its state is saved with the trial's."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, name: str, per_batch: LRScheduler | None = None,
                 per_epoch: LRScheduler | None = None) -> None:
        self.optimizer = optimizer
        self.name = name
        self._per_batch = per_batch
        self._per_epoch = per_epoch

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step will use (of the first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def after_batch(self) -> None:
        if self._per_batch is not None:
            self._per_batch.step()

    def after_epoch(self, val_loss: float) -> None:
        if isinstance(self._per_epoch, ReduceLROnPlateau):
            self._per_epoch.step(val_loss)
        elif self._per_epoch is not None:
            self._per_epoch.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "per_batch": None if self._per_batch is None else self._per_batch.state_dict(),
            "per_epoch": None if self._per_epoch is None else self._per_epoch.state_dict(),
            # Schedulers update the lr in place, so it is part of the schedule's state; restoring it
            # here makes resuming exact whether or not the optimizer's state is loaded too.
            "lrs": [float(group["lr"]) for group in self.optimizer.param_groups],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        same_parts = ((state["per_batch"] is None) == (self._per_batch is None)
                      and (state["per_epoch"] is None) == (self._per_epoch is None))
        if state["name"] != self.name or not same_parts or len(state["lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"saved learning-rate schedule {state['name']!r} does not match this one "
                             f"({self.name!r}): resume with the lr_schedule and warmup_epochs it was saved with")
        for scheduler, saved in ((self._per_batch, state["per_batch"]), (self._per_epoch, state["per_epoch"])):
            if scheduler is not None:
                scheduler.load_state_dict(dict(saved))
        for group, lr in zip(self.optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = lr


def build_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int) -> LrSchedule:
    """The schedule `config` names, with its warmup, for an optimizer built by `build_optimizer`."""
    factory = SCHEDULES.get(config.lr_schedule)
    _check(config, steps_per_epoch=steps_per_epoch)
    warmup_steps = _warmup_steps(config, steps_per_epoch=steps_per_epoch)
    # Built first, so the schedulers after it see its start (lr/10) and keep the base lr as initial_lr.
    warmup = (LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup_steps)
              if warmup_steps else None)
    main = factory(config, optimizer, steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps)
    per_batch = main.scheduler if main is not None and main.every == "batch" else None
    per_epoch = main.scheduler if main is not None and main.every == "epoch" else None
    if warmup is not None:
        # A per-batch schedule starts from the base lr once warmup ends (torchvision's recipe); a
        # per-epoch one keeps counting epochs from the start, its decays multiplying the warmup's ramp.
        per_batch = warmup if per_batch is None else SequentialLR(optimizer, [warmup, per_batch],
                                                                  milestones=[warmup_steps])
    return LrSchedule(optimizer, name=config.lr_schedule, per_batch=per_batch, per_epoch=per_epoch)


def list_schedules() -> list[str]:
    return SCHEDULES.names()


def _check(config: TrainConfig, *, steps_per_epoch: int) -> None:
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    if config.warmup_epochs > 0 and config.lr_schedule == "onecycle":
        raise ValueError(f"warmup_epochs: {config.warmup_epochs} cannot be combined with lr_schedule 'onecycle', "
                         f"which warms up on its own; set warmup_epochs to 0 or choose another lr_schedule")
    if config.warmup_epochs >= config.epochs:
        raise ValueError(f"warmup_epochs: {config.warmup_epochs} must be less than epochs ({config.epochs})")
    if config.lr_schedule == "plateau" and config.gamma >= 1.0:
        raise ValueError(f"gamma: {config.gamma} must be below 1 with lr_schedule 'plateau' "
                         f"(the factor the lr is multiplied by on a plateau)")


def _warmup_steps(config: TrainConfig, *, steps_per_epoch: int) -> int:
    if config.warmup_epochs == 0:
        return 0
    # warmup_epochs may be fractional: the nearest whole batch, at least one.
    return max(1, round(config.warmup_epochs * steps_per_epoch))


@SCHEDULES.register("none")
def constant(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int,
             warmup_steps: int) -> Stepped | None:
    return None


@SCHEDULES.register("step")
def step_decay(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int,
               warmup_steps: int) -> Stepped:
    return Stepped(StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), every="epoch")


@SCHEDULES.register("cosine")
def cosine_annealing(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int,
                     warmup_steps: int) -> Stepped:
    # Anneals over the batches after warmup, reaching 0 at the end of the last epoch.
    annealing_steps = max(1, config.epochs * steps_per_epoch - warmup_steps)
    return Stepped(CosineAnnealingLR(optimizer, T_max=annealing_steps, eta_min=0.0), every="batch")


@SCHEDULES.register("onecycle")
def one_cycle(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int,
              warmup_steps: int) -> Stepped:
    # cycle_momentum off: it would overwrite the configured (searched) momentum and betas, and
    # Adagrad has neither.
    return Stepped(OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
                              total_steps=config.epochs * steps_per_epoch, cycle_momentum=False), every="batch")


@SCHEDULES.register("plateau")
def reduce_on_plateau(config: TrainConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int,
                      warmup_steps: int) -> Stepped:
    return Stepped(ReduceLROnPlateau(optimizer, mode="min", factor=config.gamma, patience=PLATEAU_PATIENCE),
                   every="epoch")

