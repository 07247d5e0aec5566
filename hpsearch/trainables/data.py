"""Datasets as uint8 images, split once per process and normalized per batch: held in memory as
tensors when they fit, or streamed from disk through a `DataLoader` (`images.py`)."""
from __future__ import annotations

import functools
import importlib.util
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from hpsearch.trainables.config import DATASETS

# Held out of every digits search so that a final test evaluation stays honest.
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 1797


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class StreamedSplit:
    """A split read from disk (or a plug-in dataset) as it is used: items are (uint8 C x H x W, label),
    or None for an unreadable file skipped under `skip_corrupt`."""

    dataset: Any  # torch.utils.data.Dataset
    shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.dataset)


AnySplit = Union[Split, StreamedSplit]


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test splits of one dataset, with the statistics to normalize them."""

    name: str
    train: AnySplit
    val: AnySplit
    test: AnySplit
    num_classes: int
    mean: tuple[float, ...]  # per channel, in raw pixel units
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    workers: int = 0  # loader processes of a streamed dataset
    flip: bool | None = None  # whether mirrored images keep their class; None: the dataset's default
    skipped: int = 0  # unreadable files left out (dataset.skip_corrupt)
    details: dict[str, Any] = field(default_factory=dict, compare=False)  # what the parent run records

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if isinstance(self.train, StreamedSplit):
            return self.train.shape
        channels, height, width = self.train.images.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, StreamedSplit)


@dataclass(frozen=True)
class RawDataset:
    train_images: np.ndarray  # uint8, N x C x H x W: the split train and val are drawn from
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(name: str = "digits", **settings: Any) -> DatasetSplits:
    """Load, split and describe a dataset from its spec settings (`dataset:`); cached so a worker
    process reads each dataset once. Built-in datasets take root, download, val_fraction and seed;
    `imagefolder` and plug-in factories take the rest (see `hpsearch.trainables.images`)."""
    return _load(json.dumps({"name": name, **settings}, sort_keys=True, default=str))


@functools.lru_cache(maxsize=4)
def _load(key: str) -> DatasetSplits:
    settings = json.loads(key)
    name = settings.pop("name")
    if settings.get("factory") or name == "imagefolder":
        from hpsearch.trainables.sources import load_source

        return load_source(name, settings)
    builtin = {key: settings[key] for key in ("root", "download", "val_fraction", "seed") if key in settings}
    return _load_builtin(name, **builtin)


load_dataset.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def _load_builtin(name: str, *, root: str | None = None, download: bool = False,
                  val_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    raw = DATASETS.get(name)(root=_resolve_root(root), download=download)
    train_idx, val_idx = _split_indices(len(raw.train_labels), val_fraction, seed)
    train = _to_split(raw.train_images[train_idx], raw.train_labels[train_idx])
    pixels = train.images.double()
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return DatasetSplits(
        name=name,
        train=train,
        val=_to_split(raw.train_images[val_idx], raw.train_labels[val_idx]),
        test=_to_split(raw.test_images, raw.test_labels),
        num_classes=raw.num_classes,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _resolve_root(root: str | None) -> str:
    return str(Path(root).expanduser() if root else Path.home() / ".cache" / "hpsearch" / "data")


def _split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    val_count = max(1, round(count * val_fraction))
    return np.sort(order[val_count:]), np.sort(order[:val_count])


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                 torch.from_numpy(np.asarray(labels, dtype=np.int64)))


@DATASETS.register("digits")
def _digits(*, root: str, download: bool) -> RawDataset:
    """scikit-learn's 1,797 8x8 digits (pixel values 0-16), shipped inside scikit-learn."""
    table = _digits_table()
    images = table[:, :64].astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    train_idx, test_idx = _split_indices(len(labels), DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return RawDataset(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10)


def _digits_table() -> np.ndarray:
    """The rows of scikit-learn's digits.csv.gz: 64 pixels and the label. Read directly, because
    importing scikit-learn costs a trial worker over a second; `load_digits` is the fallback."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


# MNIST and Fashion-MNIST as torchvision lays them out: root/<class name>/raw/<file>.
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes, MNIST's format: magic 0x0000_08_<dimensions>, big-endian sizes, data."""
    data = path.read_bytes()
    if len(data) < 8 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    values = np.frombuffer(bytearray(data), dtype=np.uint8, offset=4 + 4 * dims)  # writable, for torch
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {values.size} bytes of data for a shape of {shape}")
    return values.reshape(shape)


def _idx_dataset(raw: Path) -> RawDataset | None:
    """MNIST-like raw files read directly, or None when any is missing. torchvision reads the same
    files the same way, but importing it costs a trial process about 2 s (torchvision.ops imports
    torch._dynamo); it still downloads them, and reports what is missing."""
    paths = {split: [raw / name for name in names] for split, names in IDX_FILES.items()}
    if not all(path.is_file() for names in paths.values() for path in names):
        return None
    (train_images, train_labels), (test_images, test_labels) = (
        (read_idx(images), read_idx(labels)) for images, labels in paths.values())
    return RawDataset(train_images[:, None], train_labels.astype(np.int64), test_images[:, None],
                      test_labels.astype(np.int64), 10)


def _torchvision_dataset(cls_name: str, *, idx_files: bool = False):
    """A torchvision dataset; with `idx_files`, its raw IDX files are read directly when present."""
    def load(*, root: str, download: bool) -> RawDataset:
        found = _idx_dataset(Path(root) / cls_name / "raw") if idx_files else None
        if found is not None:
            return found
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        try:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=download)
        except RuntimeError as error:  # torchvision's "Dataset not found" when files are missing
            hint = "" if download else "; set dataset.download: true to fetch it"
            raise FileNotFoundError(f"dataset {cls_name} not found under {root}{hint} ({error})") from None
        return RawDataset(_nchw(train.data), np.asarray(train.targets), _nchw(test.data),
                          np.asarray(test.targets), len(train.classes))

    return load


def _nchw(images) -> np.ndarray:
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3:  # grayscale N x H x W
        return array[:, None, :, :]
    return array.transpose(0, 3, 1, 2)  # CIFAR's N x H x W x C


DATASETS.register("mnist")(_torchvision_dataset("MNIST", idx_files=True))
DATASETS.register("fashion_mnist")(_torchvision_dataset("FashionMNIST", idx_files=True))
DATASETS.register("cifar10")(_torchvision_dataset("CIFAR10"))

@DATASETS.register("imagefolder")
def _imagefolder(*, root: str, download: bool) -> RawDataset:
    raise ValueError("imagefolder is loaded by load_dataset from its settings (root, image_size, ...)")
