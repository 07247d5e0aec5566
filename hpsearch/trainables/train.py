"""The training loop a trial runs. Pure: no Ray, no MLflow; data, device and reporting come in."""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.data import AnySplit, DatasetSplits, Split, StreamedSplit
from hpsearch.trainables.augment import build_augmentation, erase_random_boxes
from hpsearch.trainables.init import initialize
from hpsearch.trainables.models import build_model, is_pretrained, parameter_groups
from hpsearch.trainables.optim import build_optimizer
from hpsearch.trainables.precision import Precision, precision_for
from hpsearch.trainables.recipe import (build_ema, build_mixer, image_shape, image_size_problem, repeated_order,
                                        resize)
from hpsearch.trainables.schedules import build_schedule

_MEMORY_SAMPLE_EVERY = 32  # training steps between samples of the resident memory (CPU)
EVAL_BATCH_SIZE = 2048  # examples per forward pass when evaluating; no gradients are kept
STREAMED_EVAL_BATCH_SIZE = 256  # the same for images decoded from disk, which are larger
Metrics = dict[str, float]


class Interrupted(Exception):
    """Raised within an epoch or an evaluation, at its next batch, once its session was interrupted."""


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
        # FixRes-style: trained at one size, evaluated at another (each the dataset's unless set)
        self.train_input_shape = image_shape(data.input_shape, config.train_image_size)
        self.eval_input_shape = image_shape(data.input_shape, config.eval_image_size)
        torch.manual_seed(config.seed)
        self.model = build_model(config, input_shape=self.train_input_shape, num_classes=data.num_classes)
        if not is_pretrained(config):  # pretrained weights are kept as loaded
            initialize(self.model, config.init)
        self.model.to(self.device, memory_format=torch.channels_last if self.precision.channels_last
                      else torch.preserve_format)
        shape = (1, -1, 1, 1)
        self._mean = torch.tensor(data.mean, device=self.device).view(shape)
        self._std = torch.tensor(data.std, device=self.device).view(shape)
        self._check_image_sizes()
        self._loaders: dict[int, Any] = {}  # streamed splits' loaders, their processes kept between epochs
        self.skipped = 0  # unreadable images the loaders dropped this epoch (dataset.skip_corrupt)
        self._interrupted = threading.Event()

    def interrupt(self) -> None:
        """Stop the epoch or evaluation under way, from another thread: it raises `Interrupted` at its
        next batch, as will any later one. The session is then done with."""
        self._interrupted.set()

    def batches(self, split: AnySplit, batch_size: int, order: torch.Tensor | None = None):
        """(uint8 images, labels) on the device, `batch_size` at a time, in `order` (None: as stored)."""
        if isinstance(split, Split):
            batches = ((split.images[batch], split.labels[batch]) for batch in (
                order.split(batch_size) if order is not None else
                (slice(start, start + batch_size) for start in range(0, len(split), batch_size))))
        else:
            batches = self._streamed(split, batch_size, order)
        for batch in batches:
            if self._interrupted.is_set():
                raise Interrupted
            yield batch

    def _streamed(self, split: StreamedSplit, batch_size: int, order: torch.Tensor | None):
        from hpsearch.trainables.images import batches_of, loader

        key = id(split)
        entry = self._loaders.get(key)
        if entry is None or entry[1] != batch_size:
            sampler = _Batches(len(split), batch_size)
            made = loader(split.dataset, batches=sampler, workers=self.data.workers,
                          pin_memory=self.device.type == "cuda", persistent=True)
            entry = self._loaders[key] = (made, batch_size, sampler)
        made, _, sampler = entry
        sampler.order = order
        non_blocking = self.device.type == "cuda"
        for images, labels, dropped in batches_of(made):
            self.skipped += dropped
            if len(labels):
                yield images.to(self.device, non_blocking=non_blocking), labels.to(self.device, non_blocking=non_blocking)

    def close(self) -> None:
        """Stop the loader processes of streamed splits."""
        self._loaders.clear()

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model that is evaluated and saved."""
        return self.model

    def _check_image_sizes(self) -> None:
        """A model that cannot take its images at the size train_image_size sets, or at the size it is
        evaluated at when that differs, is refused now, naming the field, rather than in its first epoch."""
        checks = [self.train_input_shape] if self.config.train_image_size else []
        if self.eval_input_shape != self.train_input_shape:
            checks.append(self.eval_input_shape)
        for shape in checks:
            problem = image_size_problem(self.model, shape=shape, trained_at=self.train_input_shape,
                                         model_name=self.config.model)
            if problem:
                raise ValueError(problem)

    def evaluate(self, split: Split) -> tuple[float, float]:
        """Mean cross-entropy and top-1 accuracy over a split."""
        metrics = self.evaluate_metrics(split)
        return metrics["loss"], metrics["accuracy"]

    @torch.no_grad()
    def evaluate_metrics(self, split: AnySplit, *, confusion: torch.Tensor | None = None) -> Metrics:
        """loss, accuracy (top-1) and, with more than 5 classes, accuracy_top5 over a split; counts
        (true class, predicted class) into `confusion` when given."""
        model = self.eval_model
        model.eval()
        loss_sum, correct, correct5 = 0.0, 0, 0
        top5 = self.data.num_classes > 5
        seen = 0
        size = STREAMED_EVAL_BATCH_SIZE if isinstance(split, StreamedSplit) else EVAL_BATCH_SIZE
        for images, targets in self.batches(split, size):
            with self.precision.autocast(self.device):
                logits = model(self._inputs(images, self.eval_input_shape)).float()
            seen += len(targets)
            if confusion is not None:
                confusion.index_put_((targets.cpu(), logits.argmax(1).cpu()), torch.ones_like(targets.cpu()),
                                     accumulate=True)
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += int((logits.argmax(1) == targets).sum())
            if top5:
                correct5 += int((logits.topk(5, dim=1).indices == targets[:, None]).any(dim=1).sum())
        seen = max(seen, 1)
        metrics = {"loss": loss_sum / seen, "accuracy": correct / seen}
        if top5:
            metrics["accuracy_top5"] = correct5 / seen
        return metrics

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        normalized = (images.float() - self._mean) / self._std
        return normalized.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else normalized

    def _inputs(self, images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """A uint8 batch as the model takes it: normalized, resized to `shape` (laid out again after a resize;
        `contiguous` is free on a batch that has the layout already)."""
        batch = resize(self._normalize(images), shape)
        return batch.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else batch


class TrainingSession(ModelSession):
    """One model being trained, an epoch at a time, with its whole state saveable and restorable."""

    def __init__(self, config: TrainConfig, *, data: DatasetSplits, device: str | torch.device = "cpu",
                 precision: Precision | None = None) -> None:
        super().__init__(config, data=data, device=device, precision=precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_loss_scaling)
        self.optimizer = build_optimizer(config, parameter_groups(self.model, config))
        steps_per_epoch = math.ceil(len(data.train) / config.batch_size)  # optimizer steps, as run_epoch takes them
        self.schedule = build_schedule(config, self.optimizer, steps_per_epoch=steps_per_epoch)
        self.batch_order = torch.Generator().manual_seed(config.seed)
        self.augmentation = build_augmentation(config.augment, input_shape=data.input_shape, dataset=data.name,
                                               flip=data.flip)
        self.augment_rng = torch.Generator().manual_seed(config.seed + 1)
        self.mixer = build_mixer(config, num_classes=data.num_classes)
        self.ema = build_ema(self.model, config.ema_decay)
        self.pruner = None
        if config.prune_amount:
            from hpsearch.trainables.pruning import Pruner

            self.pruner = Pruner(self.model, amount=config.prune_amount, schedule=config.prune_schedule,
                                 epochs=config.epochs, companion=self.ema.module if self.ema is not None else None)
        self._train = _to_device(data.train, self.device)
        self._val = _to_device(data.val, self.device)
        self.epoch = 0
        self.history: list[Metrics] = []
        from hpsearch.trainables.cost import PeakMemory

        self.peak_memory = PeakMemory(self.device)  # of training: peak_memory_mb in every epoch's metrics

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model validation evaluates and a checkpoint saves: the EMA of the weights when ema_decay is
        set, else the model trained. Pruned as far as the schedule has gone."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def fully_pruned(self) -> bool:
        """Whether the model has every pruning step planned (always, without pruning): its final form."""
        return self.pruner is None or self.pruner.done

    def run_epoch(self, *, validate: bool = True) -> Metrics:
        """Train one pass over the training split, then evaluate on the validation split (unless not
        `validate`: a final model trained on train and validation together; a plateau schedule then
        follows the training loss)."""
        started = time.perf_counter()
        self.skipped = 0
        self.model.train()
        if self.pruner is not None:
            self.pruner.start_epoch(self.epoch + 1)
        order = repeated_order(torch.randperm(len(self._train), generator=self.batch_order),
                               self.config.repeated_augment)
        if isinstance(self._train, Split):
            order = order.to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for step, (inputs, targets) in enumerate(self.batches(self._train, self.config.batch_size, order)):
            seen += len(targets)
            if step % _MEMORY_SAMPLE_EVERY == 1:  # after the first step, when gradients and optimizer state exist
                self.peak_memory.sample()
            inputs, targets, soft_targets = self._training_batch(inputs, targets)
            with self.precision.autocast(self.device):
                logits = self.model(inputs)
            # Soft targets (MixUp, CutMix) take label smoothing as hard ones do, as in torchvision's references.
            loss = F.cross_entropy(logits.float(), targets if soft_targets is None else soft_targets,
                                   label_smoothing=self.config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss + self._l1_penalty()).backward()
            if self.pruner is not None:
                self.pruner.mask_gradients()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.pruner is not None:
                self.pruner.enforce()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.schedule.after_batch()
            loss_sum += loss.detach() * len(targets)
            correct += (logits.detach().argmax(1) == targets).sum()
        if self.pruner is not None:
            self.pruner.end_epoch(self.epoch + 1)
        train_seconds = time.perf_counter() - started
        seen = max(seen, 1)
        val = self.evaluate_metrics(self._val) if validate else {}
        self.epoch += 1
        epoch_lr = self.optimizer.param_groups[0]["lr"]  # before the schedule moves on to the next epoch
        followed = val["loss"] if validate else float(loss_sum) / seen
        if math.isfinite(followed):
            self.schedule.after_epoch(followed)
        metrics = {
            "train_loss": float(loss_sum) / seen,
            "train_accuracy": float(correct) / seen,
            **{f"val_{name}": value for name, value in val.items()},
            "lr": epoch_lr,
            "epoch_seconds": time.perf_counter() - started,
            "images_per_second": seen / train_seconds,
            "peak_memory_mb": self.peak_memory.mb,
        }
        if self.skipped:
            metrics["skipped_images"] = float(self.skipped)
        if self.pruner is not None:
            from hpsearch.trainables.pruning import sparsity

            metrics["sparsity"] = sparsity(self.eval_model)
        self.history.append(metrics)
        return metrics

    def _training_batch(self, images: torch.Tensor, targets: torch.Tensor):
        """(inputs, hard targets, soft targets or None) of one training step: augmented, normalized and
        resized, boxes erased, mixed. Hard targets of a mixed batch are each row's larger share, as
        torchvision's references count accuracy."""
        if self.augmentation is not None:
            images = self.augmentation(images, self.augment_rng)
        inputs = self._inputs(images, self.train_input_shape)
        if self.config.random_erasing:
            inputs = erase_random_boxes(inputs, self.config.random_erasing, self.augment_rng)
        if self.mixer is None:
            return inputs, targets, None
        inputs, soft_targets = self.mixer(inputs, targets, self.augment_rng)
        return inputs, soft_targets.argmax(1), soft_targets

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
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "pruner": self.pruner.state_dict() if self.pruner is not None else None,
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
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.pruner is not None:
            self.pruner.load_state_dict(state["pruner"])


class _Batches:
    """A loader's batch sampler whose order the session sets before each pass (None: as stored)."""

    def __init__(self, count: int, batch_size: int) -> None:
        self.count, self.batch_size = count, batch_size
        self.order: torch.Tensor | None = None

    def __iter__(self):
        indices = self.order.tolist() if self.order is not None else list(range(self.count))
        return iter([indices[start:start + self.batch_size] for start in range(0, len(indices), self.batch_size)])

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)


def _to_device(split: AnySplit, device: torch.device) -> AnySplit:
    if device.type == "cpu" or isinstance(split, StreamedSplit):
        return split
    return Split(split.images.to(device), split.labels.to(device))


def is_diverged(metrics: Metrics) -> bool:
    return not (math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"]))


def train(config: TrainConfig, report: Callable[[Metrics], bool | None], *, data: DatasetSplits,
          device: str | torch.device = "cpu") -> list[Metrics]:
    """Train for `config.epochs`, calling `report(metrics)` after each epoch; a truthy return stops.

    Returns the per-epoch metrics.
    """
    session = TrainingSession(config, data=data, device=device)
    try:
        while not session.finished:
            metrics = session.run_epoch()
            if report(metrics) or is_diverged(metrics):
                break
    finally:
        session.close()
    return session.history
