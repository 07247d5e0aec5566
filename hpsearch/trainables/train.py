"""The training loop a trial runs. Pure: no Ray, no MLflow; data, device and reporting come in."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.data import DatasetSplits, Split
from hpsearch.trainables.augment import build_augmentation
from hpsearch.trainables.init import initialize
from hpsearch.trainables.models import build_model
from hpsearch.trainables.optim import build_optimizer
from hpsearch.trainables.precision import Precision, precision_for
from hpsearch.trainables.schedules import build_schedule

EVAL_BATCH_SIZE = 2048  # examples per forward pass when evaluating; no gradients are kept
Metrics = dict[str, float]


class ModelSession:
    """A model on its device with its dataset's normalization: all that evaluating needs.

    No optimizer: building one imports torch._dynamo (over a second), which a process that only
    evaluates, such as a search's driver running the best trial on the test split, need not pay.
    """

    def __init__(self, config: TrainConfig, *, data: DatasetSplits, device: str | torch.device = "cpu",
                 precision: Precision | None = None) -> None:
        self.config = config
        self.data = data
        self.device = torch.device(device)
        self.precision = precision or precision_for(self.device)
        torch.manual_seed(config.seed)
        self.model = build_model(config, input_shape=data.input_shape, num_classes=data.num_classes)
        initialize(self.model, config.init)
        self.model.to(self.device, memory_format=torch.channels_last if self.precision.channels_last
                      else torch.preserve_format)
        shape = (1, -1, 1, 1)
        self._mean = torch.tensor(data.mean, device=self.device).view(shape)
        self._std = torch.tensor(data.std, device=self.device).view(shape)

    def evaluate(self, split: Split) -> tuple[float, float]:
        """Mean cross-entropy and top-1 accuracy over a split."""
        metrics = self.evaluate_metrics(split)
        return metrics["loss"], metrics["accuracy"]

    @torch.no_grad()
    def evaluate_metrics(self, split: Split) -> Metrics:
        """loss, accuracy (top-1) and, with more than 5 classes, accuracy_top5 over a split."""
        self.model.eval()
        loss_sum, correct, correct5 = 0.0, 0, 0
        top5 = self.data.num_classes > 5
        for start in range(0, len(split), EVAL_BATCH_SIZE):
            targets = split.labels[start:start + EVAL_BATCH_SIZE]
            with self.precision.autocast(self.device):
                logits = self.model(self._normalize(split.images[start:start + EVAL_BATCH_SIZE])).float()
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += int((logits.argmax(1) == targets).sum())
            if top5:
                correct5 += int((logits.topk(5, dim=1).indices == targets[:, None]).any(dim=1).sum())
        metrics = {"loss": loss_sum / len(split), "accuracy": correct / len(split)}
        if top5:
            metrics["accuracy_top5"] = correct5 / len(split)
        return metrics

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        normalized = (images.float() - self._mean) / self._std
        return normalized.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else normalized


class TrainingSession(ModelSession):
    """One model being trained, an epoch at a time, with its whole state saveable and restorable."""

    def __init__(self, config: TrainConfig, *, data: DatasetSplits, device: str | torch.device = "cpu",
                 precision: Precision | None = None) -> None:
        super().__init__(config, data=data, device=device, precision=precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_loss_scaling)
        self.optimizer = build_optimizer(config, self.model.parameters())
        steps_per_epoch = math.ceil(len(data.train) / config.batch_size)  # optimizer steps, as run_epoch takes them
        self.schedule = build_schedule(config, self.optimizer, steps_per_epoch=steps_per_epoch)
        self.batch_order = torch.Generator().manual_seed(config.seed)
        self.augmentation = build_augmentation(config.augment, input_shape=data.input_shape, dataset=data.name)
        self.augment_rng = torch.Generator().manual_seed(config.seed + 1)
        self._train = _to_device(data.train, self.device)
        self._val = _to_device(data.val, self.device)
        self.epoch = 0
        self.history: list[Metrics] = []

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    def run_epoch(self) -> Metrics:
        """Train one pass over the training split, then evaluate on the validation split."""
        started = time.perf_counter()
        self.model.train()
        images, labels = self._train.images, self._train.labels
        order = torch.randperm(len(labels), generator=self.batch_order).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for batch in order.split(self.config.batch_size):
            targets = labels[batch]
            inputs = images[batch]
            if self.augmentation is not None:
                inputs = self.augmentation(inputs, self.augment_rng)
            with self.precision.autocast(self.device):
                logits = self.model(self._normalize(inputs))
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss + self._l1_penalty()).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.after_batch()
            loss_sum += loss.detach() * len(batch)
            correct += (logits.detach().argmax(1) == targets).sum()
        train_seconds = time.perf_counter() - started
        val = self.evaluate_metrics(self._val)
        self.epoch += 1
        epoch_lr = self.optimizer.param_groups[0]["lr"]  # before the schedule moves on to the next epoch
        if math.isfinite(val["loss"]):
            self.schedule.after_epoch(val["loss"])
        metrics = {
            "train_loss": float(loss_sum) / len(labels),
            "train_accuracy": float(correct) / len(labels),
            **{f"val_{name}": value for name, value in val.items()},
            "lr": epoch_lr,
            "epoch_seconds": time.perf_counter() - started,
            "images_per_second": len(labels) / train_seconds,
        }
        self.history.append(metrics)
        return metrics

    def _l1_penalty(self) -> torch.Tensor | float:
        if not self.config.l1:
            return 0.0
        # Weights only: penalizing biases and norm shifts does not sparsify anything.
        return self.config.l1 * sum(p.abs().sum() for p in self.model.parameters() if p.dim() > 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batch_order": self.batch_order.get_state(),
            "augment_rng": self.augment_rng.get_state(),
            # Dropout draws from torch's global generators.
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.batch_order.set_state(state["batch_order"])
        self.augment_rng.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = list(state["history"])


def _to_device(split: Split, device: torch.device) -> Split:
    return split if device.type == "cpu" else Split(split.images.to(device), split.labels.to(device))


def is_diverged(metrics: Metrics) -> bool:
    return not (math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"]))


def train(config: TrainConfig, report: Callable[[Metrics], bool | None], *, data: DatasetSplits,
          device: str | torch.device = "cpu") -> list[Metrics]:
    """Train for `config.epochs`, calling `report(metrics)` after each epoch; a truthy return stops.

    Returns the per-epoch metrics.
    """
    session = TrainingSession(config, data=data, device=device)
    while not session.finished:
        metrics = session.run_epoch()
        if report(metrics) or is_diverged(metrics):
            break
    return session.history
