"""Image datasets beyond the built-in four: ImageFolder trees and plug-in factories.

`plan_source` is what a search decides once, in its driver: the class names, the split sizes,
whether the data fits in memory, and the normalization statistics, recorded on the parent run.
`load_source` is what each trial process builds from those settings: the splits, decoded into
memory or streamed through loader processes.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Mapping

import numpy as np
import torch

from hpsearch.trainables.data import DatasetSplits, Split, StreamedSplit
from hpsearch.trainables.images import (DataError, Decoder, FolderDataset, ItemConverter, batches_of, channel_statistics,
                                        in_order, loader, scan_imagefolder)
from hpsearch.trainables.plugins import PluginError, import_factory

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of decoded images a trial may hold in memory (dataset.memory_budget)
DECODE_BATCH = 256  # images per batch when decoding a dataset into memory


def plan_source(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The decisions and facts a search records once: see `_plan`."""
    return _plan(json.dumps({"name": name, **settings}, sort_keys=True, default=str))


@functools.lru_cache(maxsize=4)
def _plan(key: str) -> dict[str, Any]:
    settings = json.loads(key)
    splits = _splits(settings.pop("name"), settings)
    train, shape = splits["train"], splits["shape"]
    decoded = sum(len(splits[part]) for part in ("train", "val", "test")) * int(np.prod(shape))
    in_memory = settings.get("in_memory", "auto")
    if in_memory == "auto":
        in_memory = decoded <= int(settings.get("memory_budget") or DEFAULT_MEMORY_BUDGET)
    if settings.get("mean") and settings.get("std"):
        mean, std = tuple(settings["mean"]), tuple(settings["std"])
    else:
        mean, std = channel_statistics(lambda index: _image(train, index), len(train), seed=settings.get("seed", 0))
    return {"classes": list(splits["classes"]), "shape": list(shape), "in_memory": bool(in_memory),
            "mean": list(mean), "std": list(std), "decoded_bytes": decoded, "skipped": len(splits["skipped"]),
            "skipped_files": splits["skipped"],
            "sizes": {part: len(splits[part]) for part in ("train", "val", "test")}}


def load_source(name: str, settings: Mapping[str, Any]) -> DatasetSplits:
    """The splits of an ImageFolder or plug-in dataset: in memory or streamed, as planned."""
    settings = dict(settings)
    plan = plan_source(name, settings)
    splits = _splits(name, settings)
    shape = tuple(plan["shape"])
    workers = int(settings.get("workers") or 0)
    parts: dict[str, Split | StreamedSplit] = {}
    skipped = int(plan["skipped"])
    for part in ("train", "val", "test"):
        if plan["in_memory"]:
            parts[part], dropped = _decode_all(splits[part], shape, workers=workers)
            skipped += dropped
        else:
            parts[part] = StreamedSplit(splits[part], shape)
    shown = settings.get("factory") or name
    return DatasetSplits(
        name=shown, train=parts["train"], val=parts["val"], test=parts["test"],
        num_classes=len(plan["classes"]), mean=tuple(plan["mean"]), std=tuple(plan["std"]),
        classes=tuple(plan["classes"]), workers=workers, flip=bool(settings.get("flip", False)), skipped=skipped,
        details=plan)


def _splits(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The three splits as datasets of (uint8 image, label) items, with the classes and image shape."""
    channels, image_size = settings.get("channels"), settings.get("image_size")
    skip = bool(settings.get("skip_corrupt", False))
    if settings.get("factory"):
        return _factory_splits(settings["factory"], settings.get("args") or {}, channels=channels,
                               image_size=image_size, skip_corrupt=skip)
    scan = scan_imagefolder(settings["root"], val_fraction=settings.get("val_fraction", 0.2),
                            test_fraction=settings.get("test_fraction", 0.1), seed=settings.get("seed", 0),
                            skip_corrupt=skip, check_headers=settings.get("check_headers", True),
                            exclude=tuple(settings.get("exclude") or ()))
    channels, image_size = channels or 3, image_size or 224
    decoder = Decoder(channels=channels, image_size=image_size)
    return {"classes": scan.classes, "shape": (channels, image_size, image_size), "skipped": list(scan.skipped),
            **{part: FolderDataset(getattr(scan, part), decoder, skip_corrupt=skip) for part in ("train", "val", "test")}}


def _factory_splits(reference: str, args: Mapping[str, Any], *, channels: int | None, image_size: int | None,
                    skip_corrupt: bool) -> dict[str, Any]:
    function = import_factory(reference, what="dataset")
    try:
        made = function(**args)
    except Exception as error:  # noqa: BLE001  (user code)
        detail = str(error).splitlines()[0] if str(error) else ""
        raise PluginError(f"dataset {reference!r} raised {type(error).__name__}{': ' + detail if detail else ''}") \
            from None
    if isinstance(made, Mapping):
        missing = [key for key in ("train", "val", "test", "classes") if key not in made]
        if missing:
            raise PluginError(f"dataset {reference!r} returned a mapping without {missing}; it returns "
                              f"train, val, test and classes")
        made = (made["train"], made["val"], made["test"], made["classes"])
    if not (isinstance(made, (tuple, list)) and len(made) == 4):
        raise PluginError(f"dataset {reference!r} returned {type(made).__name__}; it returns (train, val, test, "
                          f"classes): three datasets of (image, label) and the class names")
    *datasets, classes = made
    classes = tuple(str(name) for name in classes)
    if len(classes) < 2:
        raise PluginError(f"dataset {reference!r} has {len(classes)} class names; a classifier needs at least two")
    splits: dict[str, Any] = {"classes": classes, "skipped": []}
    for part, dataset in zip(("train", "val", "test"), datasets):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise PluginError(f"dataset {reference!r}: its {part} split is a {type(dataset).__name__}, not a "
                              f"dataset (it needs __len__ and __getitem__)")
        if len(dataset) == 0:
            raise PluginError(f"dataset {reference!r}: its {part} split is empty")
        splits[part] = ItemConverter(dataset, name=f"{reference} {part}", channels=channels, image_size=image_size,
                                     skip_corrupt=skip_corrupt, num_classes=len(classes))
    first = next((item for item in (splits["train"][index] for index in range(min(len(splits["train"]), 16)))
                  if item is not None), None)
    if first is None:
        raise PluginError(f"dataset {reference!r}: none of its first training items could be read")
    splits["shape"] = tuple(int(size) for size in first[0].shape)
    return splits


def _image(dataset, index: int) -> torch.Tensor | None:
    item = dataset[index]
    return None if item is None else item[0]


def _decode_all(dataset, shape: tuple[int, ...], *, workers: int) -> tuple[Split, int]:
    """Every item of a split decoded into one uint8 tensor (decoded by the loader processes)."""
    images = torch.empty((len(dataset), *shape), dtype=torch.uint8)
    labels = torch.empty(len(dataset), dtype=torch.long)
    filled = skipped = 0
    made = loader(dataset, batches=in_order(len(dataset), DECODE_BATCH), workers=workers, pin_memory=False)
    for batch, targets, dropped in batches_of(made):
        if len(batch) and tuple(batch.shape[1:]) != tuple(shape):
            raise DataError(f"images of shape {tuple(batch.shape[1:])} where {tuple(shape)} was expected; set "
                            f"dataset.image_size so that every image is resized to one size")
        images[filled:filled + len(batch)] = batch
        labels[filled:filled + len(batch)] = targets
        filled += len(batch)
        skipped += dropped
    return Split(images[:filled].clone() if skipped else images, labels[:filled].clone() if skipped else labels), skipped
