"""Augmentation presets applied to whole uint8 batches (N x C x H x W) on the batch's device.

Every random draw comes from the `torch.Generator` passed with the batch (torchvision's transforms,
which draw from the global RNG, from a fork of it seeded by that generator), so one seed reproduces
a trial's augmentation exactly. The per-sample ops are written as
batched tensor ops: torchvision's v2 random transforms draw one set of parameters per call
from the global RNG, which would make every image in a batch move the same way.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, is_dataclass, replace
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from hpsearch.trainables.config import AUGMENTATIONS

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Rotation blurs the few pixels of smaller images (8x8 digits) into noise.
MIN_SIDE_FOR_ROTATION = 28
# Datasets whose classes are mirror-symmetric; a flipped digit or letter is another class or none.
FLIPPABLE_DATASETS = frozenset({"cifar10"})


@dataclass(frozen=True)
class Augmentation:
    """One preset resolved for an input shape: call it with a uint8 batch and a generator."""

    max_shift: int  # pixels, per axis: zero-pad then crop at a random offset
    max_degrees: float  # rotation angle drawn from [-max_degrees, max_degrees]; 0 disables
    flip: bool  # horizontal flip with probability 1/2
    color_jitter: float  # brightness, contrast and saturation factors from [1 - j, 1 + j]; 0 disables
    erase_side: int  # side in pixels of the square cut out; 0 disables
    erase_probability: float = 0.5
    crop_scale: float = 0.0  # random-resized crop: least share of the image's area kept; 0 disables

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(images)
        if len(images) == 0:
            return images
        batch = images.float()
        if self.crop_scale:
            batch = _resized_crop(batch, self.crop_scale, generator)
        if self.max_shift:
            batch = _translate(batch, self.max_shift, generator)
        if self.max_degrees:
            batch = _rotate(batch, self.max_degrees, generator)
        if self.flip:
            batch = _flip(batch, generator)
        if self.color_jitter:
            batch = _jitter_colors(batch, self.color_jitter, generator)
        if self.erase_side:
            batch = _erase(batch, self.erase_side, self.erase_probability, generator)
        return batch.round_().clamp_(0, 255).to(torch.uint8)


def build_augmentation(name: str, *, input_shape: tuple[int, int, int], dataset: str,
                       flip: bool | None = None) -> Augment | None:
    """The preset `name` for images of `input_shape` from `dataset`; None for `none`. `flip` says
    whether mirrored images keep their class (None: the built-in dataset's own answer).

    Raises ValueError for an unknown name, listing the known ones.
    """
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape: {tuple(input_shape)!r} is not a (channels, height, width) of positive sizes")
    augmentation = AUGMENTATIONS.get(name)(input_shape=tuple(input_shape), dataset=dataset)
    if flip is not None and is_dataclass(augmentation) and hasattr(augmentation, "flip"):
        augmentation = replace(augmentation, flip=flip)
    return augmentation


@AUGMENTATIONS.register("none")
def no_augmentation(*, input_shape: tuple[int, int, int], dataset: str) -> None:
    return None


@AUGMENTATIONS.register("light")
def light(*, input_shape: tuple[int, int, int], dataset: str) -> Augmentation:
    """Shifts of up to 1/8 of the side, rotation up to 10 degrees on larger images, flips where safe."""
    _, height, width = input_shape
    side = min(height, width)
    return Augmentation(
        max_shift=_round_half_up(side / 8),
        max_degrees=10.0 if side >= MIN_SIDE_FOR_ROTATION else 0.0,
        flip=dataset in FLIPPABLE_DATASETS,
        color_jitter=0.0,
        erase_side=0,
    )


@AUGMENTATIONS.register("strong")
def strong(*, input_shape: tuple[int, int, int], dataset: str) -> Augmentation:
    """Light's ops, larger, plus colour jitter on RGB images and a cut-out patch of 1/4 of the side."""
    channels, height, width = input_shape
    side = min(height, width)
    return Augmentation(
        max_shift=_round_half_up(side * 3 / 16),
        max_degrees=15.0 if side >= MIN_SIDE_FOR_ROTATION else 0.0,
        flip=dataset in FLIPPABLE_DATASETS,
        color_jitter=0.3 if channels == 3 else 0.0,
        erase_side=max(1, _round_half_up(side / 4)),
    )


@AUGMENTATIONS.register("resized_crop")
def resized_crop(*, input_shape: tuple[int, int, int], dataset: str) -> Augmentation:
    """A random-resized crop (8-100% of the area, aspect 3/4-4/3, scaled back to size) and flips
    where safe: torchvision's recipe for natural images, on a whole batch."""
    return Augmentation(max_shift=0, max_degrees=0.0, flip=dataset in FLIPPABLE_DATASETS, color_jitter=0.0,
                        erase_side=0, crop_scale=0.08)


@dataclass(frozen=True)
class TrivialAugment:
    """torchvision's TrivialAugmentWide (Mueller & Hutter 2021): one op of random kind and strength per
    image, after a flip where it is safe, as torchvision's recipe has it. Its magnitudes are torchvision's,
    set for full-range (0-255) images of 32 px and more: translations reach 32 px, which moves an 8 px
    digit out of its frame.

    The transform draws from torch's global generator, one op per call, so each image is transformed on
    its own, in a fork of that generator seeded from the batch's: the same generator state gives the
    same batch, and dropout's global generator is left as it was.
    """

    flip: bool

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(images)
        if len(images) == 0:
            return images
        if self.flip:
            images = _flip(images, generator)
        from torchvision.transforms import v2

        transform = v2.TrivialAugmentWide()
        with seeded_global_rng(generator):
            return torch.stack([transform(image) for image in images])


@AUGMENTATIONS.register("trivialaugment")
def trivialaugment(*, input_shape: tuple[int, int, int], dataset: str) -> TrivialAugment:
    """torchvision's TrivialAugmentWide on each image, and flips where safe."""
    return TrivialAugment(flip=dataset in FLIPPABLE_DATASETS)


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator) -> Iterator[None]:
    """torch's global CPU generator, forked and seeded by one draw from `generator`, for transforms that
    draw from it (torchvision's v2 random transforms); restored on exit."""
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def erase_random_boxes(batch: torch.Tensor, probability: float, generator: torch.Generator, *,
                       scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3),
                       attempts: int = 10) -> torch.Tensor:
    """torchvision's RandomErasing on each image of a normalized float batch, on its own: with
    `probability`, a box of `scale` of the area and aspect `ratio` (log-uniform) at a random place is set
    to 0, the dataset's mean colour. As torchvision, a box is drawn up to `attempts` times until it fits
    inside the image; an image none fits is left as it is."""
    count, _, height, width = batch.shape
    if count == 0 or probability == 0:
        return batch
    device = batch.device
    erased = _uniform(count, 0.0, 1.0, generator, device) < probability
    area = _uniform(count * attempts, *scale, generator, device).view(count, attempts) * (height * width)
    log_aspect = _uniform(count * attempts, math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = log_aspect.exp().view(count, attempts)
    box_heights = (area * aspect).sqrt().round()
    box_widths = (area / aspect).sqrt().round()
    fits = (box_heights < height) & (box_widths < width)
    first = fits.float().argmax(dim=1, keepdim=True)  # the first attempt that fits, as torchvision takes it
    box_height = box_heights.gather(1, first).squeeze(1)
    box_width = box_widths.gather(1, first).squeeze(1)
    erased &= fits.any(dim=1)
    top = (_uniform(count, 0.0, 1.0, generator, device) * (height - box_height + 1)).floor()
    left = (_uniform(count, 0.0, 1.0, generator, device) * (width - box_width + 1)).floor()
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_width)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erased[:, None, None])[:, None]
    return batch.masked_fill(mask, 0.0)


def _check_batch(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"augmentation expects a uint8 N x C x H x W batch, got {images.dtype} "
                        f"with shape {tuple(images.shape)}")


def _resized_crop(batch: torch.Tensor, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Each image cropped to its own random area (`min_scale`-1 of the image, aspect 3/4-4/3, log-uniform)
    at a random place, and resized back to the batch's size, bilinear."""
    count = len(batch)
    area = _uniform(count, min_scale, 1.0, generator, batch.device)
    log_ratio = _uniform(count, math.log(3 / 4), math.log(4 / 3), generator, batch.device)
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)  # as fractions of the image's width and height
    height = (area / ratio).sqrt().clamp(max=1.0)
    # The crop's centre, in [-1, 1] coordinates, anywhere the crop stays inside the image.
    centre_x = _uniform(count, -1.0, 1.0, generator, batch.device) * (1 - width)
    centre_y = _uniform(count, -1.0, 1.0, generator, batch.device) * (1 - height)
    zeros = torch.zeros_like(width)
    theta = torch.stack([torch.stack([width, zeros, centre_x], dim=1),
                         torch.stack([zeros, height, centre_y], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _uniform(count: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`count` draws from [low, high), made on the generator's device and moved to the batch's."""
    draws = torch.rand(count, generator=generator, device=generator.device)
    return (low + (high - low) * draws).to(device)


def _randint(count: int, high: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(high, (count,), generator=generator, device=generator.device).to(device)


def _translate(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `max_shift` and crop each image back to size at its own random offset."""
    count, channels, height, width = batch.shape
    padded = F.pad(batch, (max_shift, max_shift, max_shift, max_shift))
    top = _randint(count, 2 * max_shift + 1, generator, batch.device)
    left = _randint(count, 2 * max_shift + 1, generator, batch.device)
    rows = (top[:, None] + torch.arange(height, device=batch.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=batch.device))[:, None, None, :]
    samples = torch.arange(count, device=batch.device)[:, None, None, None]
    planes = torch.arange(channels, device=batch.device)[None, :, None, None]
    return padded[samples, planes, rows, cols]


def _rotate(batch: torch.Tensor, max_degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image about its centre by its own angle, bilinear, zeros outside."""
    count, _, height, width = batch.shape
    angles = torch.deg2rad(_uniform(count, -max_degrees, max_degrees, generator, batch.device))
    cos, sin = angles.cos(), angles.sin()
    zeros = torch.zeros_like(cos)
    # affine_grid works in [-1, 1] coordinates per axis; the aspect terms keep non-square images rigid.
    theta = torch.stack([torch.stack([cos, -sin * height / width, zeros], dim=1),
                         torch.stack([sin * width / height, cos, zeros], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flipped = _uniform(len(batch), 0.0, 1.0, generator, batch.device) < 0.5
    return torch.where(flipped[:, None, None, None], batch.flip(-1), batch)


def _jitter_colors(batch: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, then saturation, each by its own factor per image, as ColorJitter does."""
    count = len(batch)
    brightness, contrast, saturation = (
        _uniform(count, 1 - strength, 1 + strength, generator, batch.device)[:, None, None, None]
        for _ in range(3))
    batch = (batch * brightness).clamp_(0, 255)
    # Imported here: torchvision costs a trial worker most of a second at start-up.
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    mean_gray = rgb_to_grayscale(batch).mean(dim=(1, 2, 3), keepdim=True)
    batch = (contrast * batch + (1 - contrast) * mean_gray).clamp_(0, 255)
    return (saturation * batch + (1 - saturation) * rgb_to_grayscale(batch)).clamp_(0, 255)


def _erase(batch: torch.Tensor, side: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Cut out a `side` square at a random place in some images, filled with the image's mean colour
    (raw pixels are not normalized yet, so 0 would be black rather than the average)."""
    count, _, height, width = batch.shape
    erased = _uniform(count, 0.0, 1.0, generator, batch.device) < probability
    top = _randint(count, height - min(side, height) + 1, generator, batch.device)
    left = _randint(count, width - min(side, width) + 1, generator, batch.device)
    rows = torch.arange(height, device=batch.device)
    cols = torch.arange(width, device=batch.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erased[:, None, None])[:, None]
    fill = batch.mean(dim=(2, 3), keepdim=True)
    return torch.where(mask, fill, batch)
