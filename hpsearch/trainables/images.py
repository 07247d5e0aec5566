"""A user's own images: ImageFolder trees read from disk, and plug-in datasets from a factory.

Both end as fixed-size uint8 images (C x H x W), like the built-in datasets: decoded once into
memory when they fit, or streamed through a `DataLoader` and decoded on the fly when they do not.
Everything about a folder that can be checked without decoding its images (a missing root, an
empty or lone class, classes that differ between splits, files that are not images) is checked by
`scan_imagefolder`, which `hpsearch validate` runs; a file that fails only when decoded is named
when it is met.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

# What torchvision's ImageFolder accepts, and what Pillow decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "val", "test")
TEST_SPLIT_SEED = 1797  # the test split does not move with dataset.seed: it stays unseen by every search
STATS_SAMPLE = 2048  # training images the normalization statistics are estimated from, at most


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file or folder and what is wrong."""


@dataclass(frozen=True)
class FolderSplit:
    """One split of an ImageFolder tree: file paths (as one array, not a list of str: loader
    workers forked from the trial touch no per-file Python object) and their class indices."""

    paths: np.ndarray  # bytes, one per file
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        return os.fsdecode(self.paths[index])


@dataclass(frozen=True)
class FolderScan:
    """An ImageFolder tree, split: what validate checks and every trial re-derives (it is cheap and seeded)."""

    root: str
    classes: tuple[str, ...]
    train: FolderSplit
    val: FolderSplit
    test: FolderSplit
    layout: str  # "folders": root/train, root/val, root/test; "split": one tree split with a seed
    skipped: tuple[str, ...] = field(default=())  # unreadable files left out under skip_corrupt

    @property
    def images(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)


def scan_imagefolder(root: str | Path, *, val_fraction: float, test_fraction: float, seed: int,
                     skip_corrupt: bool = False, check_headers: bool = True,
                     exclude: tuple[str, ...] = ()) -> FolderScan:
    """List and split an ImageFolder tree; raises DataError naming what is wrong.

    With `check_headers`, every file's header is read (not its pixels): a file that is not an image
    is an error, or, under `skip_corrupt`, left out and counted. A trial, whose search's driver read
    them all already, passes `check_headers=False` and the files it left out as `exclude`: the same
    files, split the same way, without reading every header again in every trial process.
    """
    return _scan(str(Path(root).expanduser().resolve()), val_fraction, test_fraction, seed, skip_corrupt,
                 check_headers, tuple(exclude))


@functools.lru_cache(maxsize=4)
def _scan(root: str, val_fraction: float, test_fraction: float, seed: int, skip_corrupt: bool,
          check_headers: bool, exclude: tuple[str, ...] = ()) -> FolderScan:
    base = Path(root)
    if not base.exists():
        raise DataError(f"dataset.root: {root} does not exist; set it to the folder that holds your class folders")
    if not base.is_dir():
        raise DataError(f"dataset.root: {root} is a file, not a folder of class folders")
    present = [name for name in SPLIT_FOLDERS if (base / name).is_dir()]
    skipped: list[str] = []
    excluded = {os.fsencode(path) for path in exclude}
    if present:
        if "train" not in present:
            raise DataError(f"dataset.root: {root} has {'/'.join(present)} folders but no train folder; "
                            f"with split folders, train/ is required (val/ and test/ are split off it when missing)")
        splits = {name: _list_classes(base / name, skip_corrupt, check_headers, skipped, excluded) for name in present}
        classes = tuple(splits["train"][0])
        for name, (other, _, _) in splits.items():
            if tuple(other) != classes:
                missing, extra = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
                raise DataError(f"dataset.root: {base / name} has classes that differ from {base / 'train'}: "
                                + "; ".join(part for part in (
                                    f"missing {missing}" if missing else "", f"not in train: {extra}" if extra else "")
                                            if part) + "; every split folder holds the same class folders")
        train = _folder_split(*splits["train"][1:])
        val = _folder_split(*splits["val"][1:]) if "val" in splits else None
        test = _folder_split(*splits["test"][1:]) if "test" in splits else None
        if test is None:
            train, test = _stratified(train, test_fraction, TEST_SPLIT_SEED)
        if val is None:
            train, val = _stratified(train, val_fraction, seed)
        layout = "folders"
    else:
        classes_list, paths, labels = _list_classes(base, skip_corrupt, check_headers, skipped, excluded)
        classes = tuple(classes_list)
        rest, test = _stratified(_folder_split(paths, labels), test_fraction, TEST_SPLIT_SEED)
        train, val = _stratified(rest, val_fraction, seed)
        layout = "split"
    for name, split in (("training", train), ("validation", val), ("test", test)):
        if len(split) == 0:
            raise DataError(f"dataset.root: {root}: the {name} split is empty; add images, or raise "
                            f"dataset.val_fraction / dataset.test_fraction")
    return FolderScan(root, classes, train, val, test, layout, tuple(skipped))


def _list_classes(folder: Path, skip_corrupt: bool, check_headers: bool, skipped: list[str],
                  excluded: set[bytes]) -> tuple[list[str], list[bytes], list[int]]:
    try:
        entries = sorted((entry for entry in os.scandir(folder) if not entry.name.startswith(".")),
                         key=lambda entry: entry.name)
    except OSError as error:
        raise DataError(f"dataset.root: cannot read {folder} ({error.strerror or error})") from None
    loose = [entry.name for entry in entries if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)]
    classes = [entry.name for entry in entries if entry.is_dir()]
    if not classes:
        hint = f" (it holds images such as {loose[0]!r} directly)" if loose else ""
        raise DataError(f"dataset.root: {folder} has no class folders{hint}; an ImageFolder tree has one folder "
                        f"per class, each holding that class's images")
    if len(classes) == 1:
        raise DataError(f"dataset.root: {folder} has a single class folder ({classes[0]!r}); a classifier needs "
                        f"at least two classes")
    paths: list[bytes] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = _image_files(folder / name)
        unreadable = 0
        if excluded:
            skipped.extend(os.fsdecode(path) for path in files if path in excluded)
            unreadable = sum(path in excluded for path in files)
            files = [path for path in files if path not in excluded]
        if check_headers:
            readable = [_readable(path, skip_corrupt) for path in files]
            skipped.extend(os.fsdecode(path) for path, ok in zip(files, readable) if not ok)
            unreadable += readable.count(False)
            files = [path for path, ok in zip(files, readable) if ok]
        if not files and unreadable:
            raise DataError(f"dataset.root: class folder {folder / name} holds no readable images ({unreadable} "
                            f"unreadable files skipped); fix them, or remove the folder")
        if not files:
            raise DataError(f"dataset.root: class folder {folder / name} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add images")
        paths += files
        labels += [index] * len(files)
    return classes, paths, labels


def _image_files(folder: Path) -> list[bytes]:
    """Image files under a class folder, recursively, sorted: the same order on every node."""
    found: list[bytes] = []
    for directory, subfolders, files in os.walk(os.fsencode(folder), followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(b"."))
        found += [os.path.join(directory, name) for name in sorted(files)
                  if name.lower().endswith(tuple(ext.encode() for ext in IMAGE_EXTENSIONS))
                  and not name.startswith(b".")]
    return found


def _readable(path: bytes, skip_corrupt: bool) -> bool:
    """Whether Pillow recognises the file as an image (header only); an error names it unless skipping."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(os.fsdecode(path)) as image:
            image.size  # noqa: B018  (parsed with the header)
        return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        if skip_corrupt:
            return False
        raise DataError(f"{os.fsdecode(path)}: not a readable image ({_reason(error, path)}); fix or remove it, "
                        f"or set dataset.skip_corrupt: true to skip unreadable files") from None


def _reason(error: BaseException, path: bytes | str) -> str:
    """Why Pillow could not read a file, without the file's name (the message names it first)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    for name in {os.fsdecode(path), os.fsdecode(getattr(error, "filename", "") or "")} - {""}:
        text = text.replace(f"'{name}'", "").replace(name, "")
    return text.strip(" :'\"") or type(error).__name__


def _folder_split(paths: Sequence[bytes], labels: Sequence[int]) -> FolderSplit:
    return FolderSplit(np.array(paths) if len(paths) else np.array([], dtype="S1"), np.asarray(labels, dtype=np.int64))


def _stratified(split: FolderSplit, fraction: float, seed: int) -> tuple[FolderSplit, FolderSplit]:
    """(rest, held out): `fraction` of each class, drawn with `seed`, held out."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(split.labels):
        members = np.flatnonzero(split.labels == label)
        count = int(round(len(members) * fraction))
        if count == 0 and len(members) > 1 and fraction > 0:
            count = 1  # every class is seen in every split where it can be
        held.append(rng.permutation(members)[:count])
    out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(split)), out)
    return (FolderSplit(split.paths[keep], split.labels[keep]), FolderSplit(split.paths[out], split.labels[out]))


# ------------------------------------------------------------------------------------------------ decoding

@dataclass(frozen=True)
class Decoder:
    """A file to a uint8 C x H x W tensor: shorter side resized to `image_size`, centre-cropped square."""

    channels: int
    image_size: int

    def __call__(self, path: str) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                image = _resize_and_crop(image, self.image_size)
        except (OSError, ValueError, SyntaxError) as error:
            raise DataError(f"{path}: not a readable image ({_reason(error, path)}); fix or remove it, or set "
                            f"dataset.skip_corrupt: true to skip unreadable files") from None
        return pil_to_tensor(image)


def _resize_and_crop(image, size: int):
    from PIL import Image

    width, height = image.size
    if (width, height) != (size, size):
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new != (width, height):
            image = image.resize(new, Image.Resampling.BILINEAR, reducing_gap=None)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return image


def pil_to_tensor(image) -> torch.Tensor:
    array = np.array(image, dtype=np.uint8)  # a copy: torch takes only writable arrays
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class FolderDataset(torch.utils.data.Dataset):
    """One split of a folder, decoded on the fly: (uint8 image, label), or None for an unreadable file
    under skip_corrupt (the loader's collate drops and counts it)."""

    def __init__(self, split: FolderSplit, decoder: Decoder, *, skip_corrupt: bool) -> None:
        self.split, self.decoder, self.skip_corrupt = split, decoder, skip_corrupt

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        try:
            return self.decoder(self.split.path(index)), int(self.split.labels[index])
        except DataError:
            if self.skip_corrupt:
                return None
            raise


# ------------------------------------------------------------------------------------------------ plug-ins

class ItemConverter:
    """A plug-in dataset's item (image, label) as a uint8 C x H x W tensor of the search's shape.

    Images may be PIL images, uint8 tensors (C x H x W, or H x W) or float tensors in [0, 1].
    """

    def __init__(self, dataset: torch.utils.data.Dataset, *, name: str, channels: int | None,
                 image_size: int | None, skip_corrupt: bool, num_classes: int) -> None:
        self.dataset, self.name, self.skip_corrupt = dataset, name, skip_corrupt
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            image, label = self.dataset[index]
        except Exception as error:  # noqa: BLE001  (user code: any failure is the item's)
            if self.skip_corrupt:
                return None
            raise DataError(f"{self.name}[{index}]: could not be read ({type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''})") from None
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise DataError(f"{self.name}[{index}]: label {label} is not one of the {self.num_classes} classes "
                            f"(0 to {self.num_classes - 1})")
        return self.convert(image, index), label

    def convert(self, image: Any, index: int) -> torch.Tensor:
        from PIL import Image

        if isinstance(image, Image.Image):
            if self.channels:
                image = image.convert("L" if self.channels == 1 else "RGB")
            if self.image_size:
                image = _resize_and_crop(image, self.image_size)
            return pil_to_tensor(image)
        if not isinstance(image, torch.Tensor):
            raise DataError(f"{self.name}[{index}]: the image is a {type(image).__name__}; a plug-in dataset gives "
                            f"(image, label) with the image a PIL image or a C x H x W tensor")
        if image.dim() == 2:
            image = image[None]
        if image.dim() != 3:
            raise DataError(f"{self.name}[{index}]: image of shape {tuple(image.shape)}; expected C x H x W")
        if image.is_floating_point():
            image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        elif image.dtype != torch.uint8:
            raise DataError(f"{self.name}[{index}]: image of dtype {image.dtype}; expected uint8 or float in [0, 1]")
        if self.channels and image.shape[0] != self.channels:
            if self.channels == 1 and image.shape[0] == 3:
                from torchvision.transforms.v2.functional import rgb_to_grayscale

                image = rgb_to_grayscale(image)
            elif self.channels == 3 and image.shape[0] == 1:
                image = image.expand(3, -1, -1)
            else:
                raise DataError(f"{self.name}[{index}]: {image.shape[0]} channels cannot become dataset.channels "
                                f"{self.channels}")
        if self.image_size and tuple(image.shape[1:]) != (self.image_size, self.image_size):
            from torchvision.transforms.v2.functional import center_crop, resize

            image = center_crop(resize(image, [self.image_size], antialias=True), [self.image_size])
        return image.contiguous()


# ------------------------------------------------------------------------------------------------ batches

def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A batch of (uint8 images, labels, unreadable items dropped)."""
    kept = [item for item in items if item is not None]
    if not kept:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), len(items)
    shapes = {tuple(image.shape) for image, _ in kept}
    if len(shapes) > 1:
        raise DataError(f"images of different shapes in one batch {sorted(shapes)}; set dataset.image_size so "
                        f"that every image is resized to one size")
    images = torch.stack([image for image, _ in kept])
    labels = torch.tensor([label for _, label in kept], dtype=torch.long)
    return images, labels, len(items) - len(kept)


def loader(dataset: torch.utils.data.Dataset, *, batches: Any, workers: int, pin_memory: bool,
           persistent: bool = False) -> torch.utils.data.DataLoader:
    """A loader of `dataset` by `batches` (an iterable of index lists, iterated anew each pass),
    decoded by `workers` loader processes; `persistent` keeps them between passes."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
        prefetch_factor=4 if workers else None, worker_init_fn=_worker_init if workers else None,
        persistent_workers=persistent and workers > 0,
        multiprocessing_context="fork" if workers and _can_fork() else None)


def worker_error(error: Exception) -> Exception:
    """An error a loader process raised, as one line: the DataLoader re-raises it with the worker's
    whole traceback in its message, whose last line is the error itself."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        last = lines[-1]
        if isinstance(error, DataError):
            return DataError(re.sub(r"^[\w.]*DataError: ", "", last))
        return DataError(f"a loader process failed: {last}")
    return error


def batches_of(made: torch.utils.data.DataLoader):
    """The loader's batches; an error of a loader process comes out as one line (`worker_error`)."""
    batches = iter(made)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001  (whatever a loader process raised)
            raise worker_error(error) from None
        yield batch


def in_order(count: int, batch_size: int) -> list[range]:
    return [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a loader process decodes; the trial's threads train


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def channel_statistics(images: Callable[[int], torch.Tensor], count: int, *, seed: int,
                       sample: int = STATS_SAMPLE) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in raw pixel units over up to `sample` images drawn with `seed`."""
    picks = np.sort(np.random.default_rng(seed).permutation(count)[:sample]) if count > sample else range(count)
    total = total_sq = None
    pixels = 0
    for index in picks:
        image = images(int(index))
        if image is None:
            continue
        values = image.double().flatten(1)
        total = values.sum(1) if total is None else total + values.sum(1)
        total_sq = (values ** 2).sum(1) if total_sq is None else total_sq + (values ** 2).sum(1)
        pixels += values.shape[1]
    if total is None:
        raise DataError("no readable training image to compute normalization statistics from")
    mean = total / pixels
    std = (total_sq / pixels - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())
