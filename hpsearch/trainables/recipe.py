"""The per-batch parts of torchvision's classification recipe beyond the augmentation presets:
FixRes-style image sizes, MixUp and CutMix with soft targets, repeated augmentation and an
exponential moving average (EMA) of the weights. Each is off at its TrainConfig default, and then
nothing here runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.trainables.augment import seeded_global_rng
from hpsearch.trainables.config import TrainConfig

InputShape = tuple[int, int, int]


def image_shape(native: InputShape, side: int | None) -> InputShape:
    """The shape images are resized to: `side` x `side` pixels, or `native` when side is None."""
    return (int(native[0]), side, side) if side else tuple(int(size) for size in native)


def resize(batch: torch.Tensor, shape: InputShape) -> torch.Tensor:
    """A float batch resized to `shape`'s height and width, bilinear and antialiased (torchvision's Resize
    on tensors); the batch itself when it has that size already."""
    if tuple(batch.shape[-2:]) == tuple(shape[1:]):
        return batch
    return F.interpolate(batch, size=tuple(shape[1:]), mode="bilinear", antialias=True, align_corners=False)


def repeated_order(order: torch.Tensor, repetitions: int) -> torch.Tensor:
    """torchvision's RASampler on one process (Hoffer et al. 2020; DeiT): the first ceil(n / repetitions)
    samples of `order`, each `repetitions` times in a row, cut to n. The epoch keeps its length and its
    optimizer steps; each sample in it is seen `repetitions` times, augmented anew each time."""
    if repetitions == 1:
        return order
    kept = math.ceil(len(order) / repetitions)
    return order[:kept].repeat_interleave(repetitions)[:len(order)]


class BatchMixer:
    """MixUp and CutMix (torchvision.transforms.v2) on a normalized batch; with both, one of the two per
    batch at equal odds, as torchvision's references choose. Returns the mixed batch and soft targets
    (rows summing to one) for a cross-entropy over probabilities. The transforms draw from torch's
    global generator: they run in a fork of it seeded from the session's augmentation generator."""

    def __init__(self, *, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        from torchvision.transforms import v2

        choices = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []) + \
                  ([v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha else [])
        if not choices:
            raise ValueError("BatchMixer: mixup_alpha or cutmix_alpha must be more than 0")
        self._transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        with seeded_global_rng(generator):
            return self._transform(images, labels)


def build_mixer(config: TrainConfig, *, num_classes: int) -> BatchMixer | None:
    if not (config.mixup_alpha or config.cutmix_alpha):
        return None
    return BatchMixer(mixup_alpha=config.mixup_alpha, cutmix_alpha=config.cutmix_alpha, num_classes=num_classes)


def build_ema(model: nn.Module, decay: float):
    """torch.optim.swa_utils.AveragedModel keeping an EMA of `model`'s weights and buffers (BatchNorm's
    statistics too), as torchvision's references keep it; updated after every optimizer step with
    `update_parameters(model)`, its copy of the model in `.module`. None when decay is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def image_size_problem(model: nn.Module, *, shape: InputShape, trained_at: InputShape,
                       model_name: str) -> str | None:
    """Why `model`, built for images of `trained_at`, cannot take images of `shape`: one forward pass of
    a blank image in eval mode (nothing in the model changes); None when it can."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=device))
    except (RuntimeError, ValueError) as error:
        return size_problem(model_name, trained_at=trained_at, shape=shape,
                            detail=str(error).splitlines()[0] if str(error) else type(error).__name__)
    finally:
        model.train(training)
    return None


def size_problem(model_name: str, *, trained_at: InputShape, shape: InputShape, detail: str) -> str:
    """Why a model built for images of `trained_at` fails on images of `shape`, naming the field that
    set the size: one line, as a trial starting and `hpsearch validate` both say it."""
    if tuple(shape) == tuple(trained_at):
        return f"train_image_size: model {model_name!r} cannot take {shape[1]}x{shape[2]} images ({detail})"
    return (f"eval_image_size: model {model_name!r} built for {trained_at[1]}x{trained_at[2]} images cannot take "
            f"{shape[1]}x{shape[2]} ones ({detail}); models that flatten the image into their classifier "
            f"(mlp, lenet5, cnn without global_pool) take one size: set train_image_size and eval_image_size alike")
