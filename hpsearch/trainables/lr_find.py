"""The learning-rate range test (Smith 2017): raise the learning rate exponentially, batch by batch,
and watch the training loss; a good learning rate is where the loss falls fastest."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.data import DatasetSplits
from hpsearch.trainables.train import TrainingSession

SMOOTHING = 0.9  # exponential moving average of the loss: short tests need a short memory
DIVERGENCE_FACTOR = 4.0  # stop once the smoothed loss is this many times its minimum


@dataclass(frozen=True)
class LrRangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed, bias-corrected
    suggested_lr: float

    def as_rows(self) -> list[tuple[float, float]]:
        return list(zip(self.lrs, self.losses))


def lr_range_test(config: TrainConfig, *, data: DatasetSplits, device: str | torch.device = "cpu",
                  start_lr: float = 1e-6, end_lr: float = 10.0, num_steps: int = 200) -> LrRangeTest:
    """Train `num_steps` batches of `config`'s model with the learning rate rising from start_lr to
    end_lr, cycling over the training split as needed; stops early when the loss diverges."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr range test needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    session = TrainingSession(config, data=data, device=device)
    factor = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    lrs, losses = [], []
    average, best = 0.0, math.inf
    batches = _batches(session)
    session.model.train()
    for step in range(num_steps):
        lr = start_lr * factor ** step
        for group in session.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = next(batches)
        loss = F.cross_entropy(session.model(inputs), targets)
        session.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        session.optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > DIVERGENCE_FACTOR * best and step > 10:
            break
    return LrRangeTest(lrs, losses, suggest_lr(lrs, losses))


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The smaller of two common readings: where the smoothed loss falls fastest against log(lr)
    before its minimum, and a tenth of the learning rate at the minimum."""
    if len(lrs) < 3:
        raise ValueError("the lr range test ran fewer than 3 steps; widen the range or use more steps")
    lowest = min(range(len(losses)), key=losses.__getitem__)
    end = max(lowest + 1, 3)
    slopes = [(losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
              for i in range(1, end - 1)]
    steepest = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
    return min(steepest, lrs[lowest] / 10)


def _batches(session: TrainingSession):
    images, labels = session._train.images, session._train.labels
    while True:
        order = torch.randperm(len(labels), generator=session.batch_order).to(session.device)
        for batch in order.split(session.config.batch_size):
            yield session._inputs(images[batch], session.train_input_shape), labels[batch]  # train_image_size
