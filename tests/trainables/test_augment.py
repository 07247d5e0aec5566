"""Augmentation presets on synthetic uint8 batches of each dataset's shape."""
from __future__ import annotations

import pytest
import torch

from hpsearch.trainables import AUGMENTATIONS, TrainConfig
from hpsearch.trainables.augment import Augmentation, build_augmentation

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
PRESETS = ["light", "strong"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _random_batch(dataset: str, count: int = 64, *, high: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (count, *SHAPES[dataset]), generator=generator, dtype=torch.uint8)


def _asymmetric_batch(dataset: str, count: int) -> torch.Tensor:
    """An 'L'-like mark kept away from the borders, so no shift of the allowed size crops it."""
    channels, height, width = SHAPES[dataset]
    image = torch.zeros(channels, height, width, dtype=torch.uint8)
    margin = height // 4
    image[:, margin:height - margin, margin] = 200  # vertical bar on the left
    image[:, height - margin - 1, margin:width // 2 + 1] = 120  # foot pointing right
    return image.expand(count, -1, -1, -1).clone()


def _augment(name: str, dataset: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    augment = build_augmentation(name, input_shape=SHAPES[dataset], dataset=dataset)
    return augment(images, torch.Generator().manual_seed(seed))


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`image` moved down by dy and right by dx, zeros coming in."""
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    out[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def _left_minus_right(batch: torch.Tensor) -> torch.Tensor:
    width = batch.shape[-1]
    pixels = batch.float()
    return pixels[..., : width // 2].mean(dim=(1, 2, 3)) - pixels[..., width // 2:].mean(dim=(1, 2, 3))


def test_presets_are_registered_and_accepted_by_the_config() -> None:
    assert AUGMENTATIONS.names() == ["light", "none", "resized_crop", "strong", "trivialaugment"]
    for name in AUGMENTATIONS.names():
        assert TrainConfig(augment=name).augment == name


@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_none_builds_nothing(dataset: str) -> None:
    assert build_augmentation("none", input_shape=SHAPES[dataset], dataset=dataset) is None


@pytest.mark.parametrize("name", ["heavy", "Light", ""])
def test_unknown_name_lists_the_known_presets(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown augmentation .*known: "
                                         r"\['light', 'none', 'resized_crop', 'strong', 'trivialaugment'\]"):
        build_augmentation(name, input_shape=(1, 8, 8), dataset="digits")


@pytest.mark.parametrize("input_shape", [(8, 8), (1, 0, 8)])
def test_bad_input_shape_is_refused(input_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        build_augmentation("light", input_shape=input_shape, dataset="digits")


@pytest.mark.parametrize("images", [torch.zeros(4, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.uint8)])
def test_non_uint8_batches_are_refused(images: torch.Tensor) -> None:
    augment = build_augmentation("light", input_shape=(1, 8, 8), dataset="digits")
    with pytest.raises(TypeError, match="uint8 N x C x H x W"):
        augment(images, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("name", PRESETS)
def test_shape_dtype_and_device_are_kept(name: str, dataset: str, device: str) -> None:
    images = _random_batch(dataset).to(device)
    out = _augment(name, dataset, images)
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    assert not torch.equal(out, images)


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("name", PRESETS)
def test_equal_generator_states_give_equal_batches(name: str, dataset: str) -> None:
    images = _random_batch(dataset)
    torch.manual_seed(1)
    first = _augment(name, dataset, images, seed=7)
    torch.manual_seed(2)  # the global RNG plays no part
    assert torch.equal(first, _augment(name, dataset, images, seed=7))
    assert not torch.equal(first, _augment(name, dataset, images, seed=8))


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("name", PRESETS)
def test_samples_in_a_batch_are_augmented_independently(name: str, dataset: str) -> None:
    out = _augment(name, dataset, _asymmetric_batch(dataset, 32))
    assert len(torch.unique(out.flatten(1), dim=0)) >= 6  # digits light has only nine outcomes


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
@pytest.mark.parametrize("name", PRESETS)
def test_grayscale_values_stay_within_the_input_range(name: str, dataset: str) -> None:
    # Digits pixels run 0..16: neither interpolation nor the cut-out fill may leave that range.
    images = _random_batch(dataset, 256, high=17)
    out = _augment(name, dataset, images)
    assert int(out.max()) <= 16


@pytest.mark.parametrize("name", PRESETS)
def test_digits_are_only_translated_and_cut_out(name: str) -> None:
    # No flip and no rotation on 8x8: each output is a shift of the original, except strong's cut-out.
    augment = build_augmentation(name, input_shape=SHAPES["digits"], dataset="digits")
    assert not augment.flip and augment.max_degrees == 0
    images = _asymmetric_batch("digits", 128)
    out = augment(images, torch.Generator().manual_seed(0))
    reach = range(-augment.max_shift, augment.max_shift + 1)
    translates = {(dy, dx): _shifted(images[0], dy, dx) for dy in reach for dx in reach}
    matched = set()
    for image in out:
        found = [shift for shift, translate in translates.items()
                 if _differs_within_a_square(image, translate, augment.erase_side)]
        assert found, "an augmented digit is not a translate of the original (flipped or rotated?)"
        matched.update(found)
    assert len(matched) >= len(translates) - 2  # per-sample offsets cover nearly every shift


def _differs_within_a_square(image: torch.Tensor, reference: torch.Tensor, side: int) -> bool:
    rows, cols = torch.nonzero((image != reference).any(dim=0), as_tuple=True)
    if len(rows) == 0:
        return True
    return int(rows.max() - rows.min()) < side and int(cols.max() - cols.min()) < side


def test_light_on_mnist_rotates() -> None:
    images = _asymmetric_batch("mnist", 32)
    out = _augment("light", "mnist", images)
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    translates = [_shifted(images[0], *shift) for shift in shifts]
    rotated = [image for image in out if not any(torch.equal(image, translate) for translate in translates)]
    assert len(rotated) >= 24


@pytest.mark.parametrize("name", PRESETS)
def test_mnist_is_never_flipped(name: str) -> None:
    out = _augment(name, "mnist", _asymmetric_batch("mnist", 256))
    assert bool((_left_minus_right(out) > 0).all())


@pytest.mark.parametrize("name", PRESETS)
def test_cifar10_flips_about_half_the_images(name: str) -> None:
    images = _asymmetric_batch("cifar10", 256)
    out = _augment(name, "cifar10", images)
    flipped = float((_left_minus_right(out) < 0).float().mean())
    assert 0.35 < flipped < 0.65


@pytest.mark.parametrize("dataset, colors_change", [("cifar10", True), ("mnist", False), ("digits", False)])
def test_strong_jitters_colours_of_rgb_images_only(dataset: str, colors_change: bool) -> None:
    channels, height, width = SHAPES[dataset]
    augment = build_augmentation("strong", input_shape=SHAPES[dataset], dataset=dataset)
    assert (augment.color_jitter > 0) == colors_change
    value = torch.tensor([200, 60, 40][:channels], dtype=torch.uint8)
    images = value[None, :, None, None].expand(256, -1, height, width).clone()
    out = augment(images, torch.Generator().manual_seed(0))
    centre = out[:, :, height // 2, width // 2]
    # Shifts, rotation and cut-out only mix in zeros or the image's own mean, so without jitter
    # no pixel can get brighter than the original.
    brighter = (centre > value).any(dim=1)
    assert bool(brighter.any()) == colors_change


def test_strong_cuts_out_a_patch() -> None:
    images = torch.full((256, 1, 28, 28), 100, dtype=torch.uint8)
    augment = build_augmentation("strong", input_shape=(1, 28, 28), dataset="mnist")
    assert isinstance(augment, Augmentation) and augment.erase_side == 7
    out = augment(images, torch.Generator().manual_seed(0))
    # The middle 8x8 is never reached by the zeros of a shift (<= 5 px) or a 15 degree rotation.
    middle = out[:, 0, 10:18, 10:18]
    erased = (middle < 100).flatten(1).any(dim=1).float().mean()
    assert 0.1 < float(erased) < 0.6


def test_strong_shifts_further_than_light() -> None:
    for dataset, shape in SHAPES.items():
        light = build_augmentation("light", input_shape=shape, dataset=dataset)
        strong = build_augmentation("strong", input_shape=shape, dataset=dataset)
        assert strong.max_shift > light.max_shift >= 1
        assert strong.max_degrees >= light.max_degrees


def test_empty_batch_passes_through() -> None:
    images = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert _augment("strong", "cifar10", images).shape == images.shape


@pytest.mark.parametrize("dataset", sorted(SHAPES))
@pytest.mark.parametrize("name", PRESETS)
def test_a_large_batch_runs(name: str, dataset: str) -> None:
    images = _random_batch(dataset, 512)
    out = _augment(name, dataset, images)
    assert out.shape == images.shape
