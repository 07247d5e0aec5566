"""Real ImageFolder trees on disk, written as PNG files from the real MNIST mini split.

Class folders are named after the digit ("zero" ... "nine"), so that class order (sorted by name)
differs from the digit: a test that confuses the two fails.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hpsearch.trainables.data import read_idx

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def mnist_arrays(shared: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    raw = shared / "MNIST" / "raw"
    return read_idx(raw / f"{prefix}-images-idx3-ubyte"), read_idx(raw / f"{prefix}-labels-idx1-ubyte")


def write_tree(root: Path, images: np.ndarray, labels: np.ndarray, *, per_class: int, classes: int = 10,
               rgb: bool = False, size: int | None = None, offset: int = 0) -> dict[str, list[Path]]:
    """`per_class` PNG files for each of the first `classes` digits under root/<name>/; returns the files.

    `rgb` writes 3-channel images (the digit tinted differently per class, so colour carries no label
    on its own... and the digit does); `size` resizes them (MNIST is 28x28).
    """
    written: dict[str, list[Path]] = {}
    for digit in range(classes):
        folder = root / NAMES[digit]
        folder.mkdir(parents=True, exist_ok=True)
        members = np.flatnonzero(labels == digit)[offset:offset + per_class]
        written[NAMES[digit]] = []
        for index in members:
            image = Image.fromarray(images[index], mode="L")
            if rgb:
                pixels = np.asarray(image, dtype=np.float32)[:, :, None]
                tint = np.array([1.0, 0.8, 0.6], dtype=np.float32)[[(index + c) % 3 for c in range(3)]]
                image = Image.fromarray((pixels * tint).astype(np.uint8), mode="RGB")
            if size:
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            path = folder / f"{int(index):05d}.png"
            image.save(path)
            written[NAMES[digit]].append(path)
    return written


def write_corrupt(path: Path) -> Path:
    """A file named like a PNG that is not an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a PNG file\n" * 4)
    return path


def write_truncated(path: Path, source: Path) -> Path:
    """A PNG whose header is whole but whose pixels are cut off: it fails only when decoded."""
    data = source.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_zoo_weights(torch_home: Path, *names: str) -> dict[str, Path]:
    """Weight files where torchvision keeps its pretrained weights (no download here): each model's
    own untrained weights, seeded, under torch_home/hub/checkpoints/<the file name torchvision uses>."""
    import os

    import torch
    import torchvision

    written = {}
    for name in names:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        path = torch_home / "hub" / "checkpoints" / os.path.basename(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            torch.manual_seed(0)
            torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
        written[name] = path
    return written


def write_sklearn_digits_tree(root: Path, *, per_class: int, size: int = 16, rgb: bool = False) -> Path:
    """An ImageFolder tree of scikit-learn's 8x8 digits, scaled to `size` px: real images that need
    no data beside the repository."""
    from hpsearch.trainables.data import DATASETS

    raw = DATASETS.get("digits")(root="", download=False)
    images = np.concatenate([raw.train_images, raw.test_images])[:, 0]
    labels = np.concatenate([raw.train_labels, raw.test_labels])
    scaled = (images.astype(np.float32) * (255 / 16)).round().astype(np.uint8)  # digits' pixels are 0-16
    big = np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
                    for image in scaled])
    write_tree(root, big, labels, per_class=per_class, rgb=rgb)
    return root
