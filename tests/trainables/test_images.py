"""A user's own images: ImageFolder trees of real PNG files written here, and plug-in dataset factories.

No Ray, no MLflow: scanning, splitting, decoding, planning and a few quick training epochs, on the
real MNIST mini split written out as PNG files (tests.imagefolder_data).
"""
from __future__ import annotations

import gc
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset, train
from hpsearch.trainables.images import (TEST_SPLIT_SEED, DataError, Decoder, FolderScan, _scan,
                                        scan_imagefolder)
from hpsearch.trainables.plugins import PluginError
from hpsearch.trainables.sources import _plan, plan_source
from tests.conftest import shared_mnist_root
from tests.imagefolder_data import NAMES, mnist_arrays, write_corrupt, write_truncated, write_tree

SORTED_NAMES = tuple(sorted(NAMES))  # the class order: by folder name, "eight" first
DIGITS = {"image_size": 28, "channels": 1}  # digit_folders decoded as they were written: no resizing
QUICK = TrainConfig(model="lenet5", epochs=2, batch_size=32)


@pytest.fixture(autouse=True)
def _fresh_caches():
    """load_dataset, the folder scan and the plan are lru-cached: tests that write files start uncached."""
    for cache in (load_dataset, _scan, _plan):
        cache.cache_clear()
    yield
    for cache in (load_dataset, _scan, _plan):
        cache.cache_clear()


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return mnist_arrays(shared_mnist_root())


def _scan_default(root: Path, **settings) -> FolderScan:
    """The scan load_dataset makes with its defaults (val 0.2, test 0.1, seed 0)."""
    return scan_imagefolder(root, **{"val_fraction": 0.2, "test_fraction": 0.1, "seed": 0, **settings})


def _pil_pixels(path: str | Path, mode: str) -> np.ndarray:
    """A file decoded independently of the product: C x H x W uint8."""
    with Image.open(path) as image:
        array = np.asarray(image.convert(mode), dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _never_stop(metrics) -> None:
    return None


# --- DataError: every unusable tree is named, with what to do, on one line -------------------------------

def _missing_root(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    return base / "nowhere", base / "nowhere", ("does not exist",)


def _root_is_a_file(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    path = base / "images.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path, path, ("is a file", "folder of class folders")


def _no_class_folders(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    (base / "empty").mkdir()
    return base / "empty", base / "empty", ("no class folders", "one folder per class")


def _loose_images(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    root = base / "loose"
    root.mkdir()
    Image.fromarray(mnist[0][0], mode="L").save(root / "digit.png")
    return root, root, ("no class folders", "'digit.png' directly", "one folder per class")


def _single_class(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "one_class", *mnist, per_class=5, classes=1)
    return base / "one_class", base / "one_class", ("single class folder", "'zero'", "at least two classes")


def _empty_class(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree", *mnist, per_class=5, classes=3)
    (base / "tree" / "zz_empty").mkdir()
    (base / "tree" / "zz_empty" / "notes.txt").write_text("not an image")
    return base / "tree", base / "tree" / "zz_empty", ("holds no images", "remove it or add images")


def _val_lacks_a_class(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree" / "train", *mnist, per_class=5, classes=3)
    write_tree(base / "tree" / "val", *mnist, per_class=2, classes=2, offset=5)
    return base / "tree", base / "tree" / "val", ("differ from", str(base / "tree" / "train"), "missing ['two']")


def _test_has_an_extra_class(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree" / "train", *mnist, per_class=5, classes=2)
    write_tree(base / "tree" / "test", *mnist, per_class=2, classes=3, offset=5)
    return base / "tree", base / "tree" / "test", ("differ from", "not in train: ['two']")


def _split_folders_without_train(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree" / "val", *mnist, per_class=3, classes=2)
    write_tree(base / "tree" / "test", *mnist, per_class=3, classes=2, offset=3)
    return base / "tree", base / "tree", ("no train folder", "train/ is required")


def _not_an_image(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree", *mnist, per_class=5, classes=2)
    bad = write_corrupt(base / "tree" / "one" / "broken.png")
    return base / "tree", bad, ("not a readable image", "fix or remove it", "dataset.skip_corrupt: true")


def _too_few_images(base: Path, mnist) -> tuple[Path, Path, tuple[str, ...]]:
    write_tree(base / "tree", *mnist, per_class=1, classes=2)
    return base / "tree", base / "tree", ("split is empty", "add images")


DATA_ERRORS = [_missing_root, _root_is_a_file, _no_class_folders, _loose_images, _single_class, _empty_class,
               _val_lacks_a_class, _test_has_an_extra_class, _split_folders_without_train, _not_an_image,
               _too_few_images]


@pytest.mark.parametrize("entry", ["scan_imagefolder", "load_dataset"])
@pytest.mark.parametrize("case", DATA_ERRORS, ids=lambda case: case.__name__.strip("_"))
def test_unusable_tree_is_a_one_line_error_naming_the_path(case, entry: str, tmp_path: Path, mnist) -> None:
    root, offending, phrases = case(tmp_path, mnist)

    with pytest.raises(DataError) as raised:
        if entry == "scan_imagefolder":
            _scan_default(root)
        else:
            load_dataset("imagefolder", root=str(root), **DIGITS)

    message = str(raised.value)
    assert "\n" not in message, message
    assert str(offending.resolve()) in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


# --- skip_corrupt: files that are not images ------------------------------------------------------------

def test_skip_corrupt_leaves_out_and_names_a_file_that_is_not_an_image(tmp_path: Path, mnist) -> None:
    written = write_tree(tmp_path / "tree", *mnist, per_class=10, classes=3)
    bad = write_corrupt(tmp_path / "tree" / "one" / "broken.png")

    scan = _scan_default(tmp_path / "tree", skip_corrupt=True)

    assert scan.skipped == (str(bad.resolve()),)
    assert scan.images == 30
    kept = {scan_split.path(index) for scan_split in (scan.train, scan.val, scan.test)
            for index in range(len(scan_split))}
    assert kept == {str(path.resolve()) for paths in written.values() for path in paths}

    plan = plan_source("imagefolder", {"root": str(tmp_path / "tree"), "skip_corrupt": True, **DIGITS})
    assert plan["skipped"] == 1
    assert sum(plan["sizes"].values()) == 30

    data = load_dataset("imagefolder", root=str(tmp_path / "tree"), skip_corrupt=True, **DIGITS)
    assert data.skipped == 1
    assert len(data.train) + len(data.val) + len(data.test) == 30


def test_trials_leave_out_the_files_the_driver_skipped_without_reading_headers(tmp_path: Path, mnist) -> None:
    write_tree(tmp_path / "tree", *mnist, per_class=10, classes=3)
    bad = write_corrupt(tmp_path / "tree" / "one" / "broken.png")
    driver = _scan_default(tmp_path / "tree", skip_corrupt=True)

    # A trial: told what the driver skipped, it reads no header and splits the same files the same way.
    trial = _scan_default(tmp_path / "tree", skip_corrupt=True, check_headers=False, exclude=driver.skipped)

    assert trial.skipped == driver.skipped == (str(bad.resolve()),)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(trial, part).paths, getattr(driver, part).paths), part
    # Without the exclusion a trial would list the broken file: the header check is what found it.
    unread = _scan_default(tmp_path / "tree", skip_corrupt=True, check_headers=False)
    assert unread.images == 31


def test_skip_corrupt_does_not_hide_a_class_with_no_readable_image(tmp_path: Path, mnist) -> None:
    write_tree(tmp_path / "tree", *mnist, per_class=4, classes=3)
    for path in (tmp_path / "tree" / "two").iterdir():
        write_corrupt(path)

    with pytest.raises(DataError) as raised:
        _scan_default(tmp_path / "tree", skip_corrupt=True)

    assert str((tmp_path / "tree" / "two").resolve()) in str(raised.value)


# --- truncated files: a whole header, pixels cut off ---------------------------------------------------

@pytest.fixture
def truncated_tree(tmp_path: Path, mnist) -> tuple[Path, Path]:
    """Split folders (so the bad file is known to be in train): 3 classes, 10 train + 3 val + 3 test each,
    and one truncated PNG more in train/one/."""
    root = tmp_path / "tree"
    written = write_tree(root / "train", *mnist, per_class=10, classes=3)
    write_tree(root / "val", *mnist, per_class=3, classes=3, offset=10)
    write_tree(root / "test", *mnist, per_class=3, classes=3, offset=13)
    bad = write_truncated(root / "train" / "one" / "zz_truncated.png", written["one"][0])
    return root, bad.resolve()


def test_truncated_png_passes_the_scan_and_fails_when_decoded(truncated_tree) -> None:
    root, bad = truncated_tree

    scan = _scan_default(root)
    assert scan.skipped == ()
    assert len(scan.train) == 31 and str(bad) in {scan.train.path(index) for index in range(len(scan.train))}

    with pytest.raises(DataError) as raised:
        Decoder(channels=1, image_size=28)(str(bad))
    message = str(raised.value)
    assert str(bad) in message and "\n" not in message and "dataset.skip_corrupt" in message


@pytest.mark.parametrize("given_statistics", [False, True], ids=["computed-stats", "given-stats"])
def test_truncated_png_fails_an_in_memory_load_naming_it(truncated_tree, given_statistics: bool) -> None:
    root, bad = truncated_tree
    statistics = {"mean": [33.0], "std": [78.0]} if given_statistics else {}

    with pytest.raises(DataError) as raised:
        load_dataset("imagefolder", root=str(root), in_memory=True, workers=0, **statistics, **DIGITS)

    message = str(raised.value)
    assert message.startswith(f"{bad}: not a readable image"), message
    assert "\n" not in message


@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_png_fails_a_streamed_epoch_naming_it(truncated_tree, workers: int) -> None:
    root, bad = truncated_tree
    # Given statistics: nothing is decoded before the first epoch.
    data = load_dataset("imagefolder", root=str(root), in_memory=False, workers=workers, mean=[33.0], std=[78.0],
                        **DIGITS)
    assert data.streamed and len(data.train) == 31

    session = TrainingSession(QUICK, data=data)
    try:
        with pytest.raises(DataError) as raised:
            session.run_epoch()
    finally:
        session.close()

    # One line, whichever process decoded it (the DataLoader re-raises a loader process's error with
    # its whole traceback; the session keeps only the error).
    assert str(raised.value) == (f"{bad}: not a readable image (image file is truncated); fix or remove it, or set "
                                 f"dataset.skip_corrupt: true to skip unreadable files")
    # The failed epoch's loader (held by the traceback) stops here, not during a later test.
    del raised, session
    gc.collect()


def test_truncated_png_is_dropped_and_counted_in_memory_under_skip_corrupt(truncated_tree) -> None:
    root, _ = truncated_tree

    data = load_dataset("imagefolder", root=str(root), in_memory=True, workers=1, skip_corrupt=True, **DIGITS)

    assert not data.streamed
    assert data.skipped == 1  # found when decoding...
    assert data.details["skipped"] == 0  # ...not by the header check
    assert (len(data.train), len(data.val), len(data.test)) == (30, 9, 9)
    assert data.train.images.shape == (30, 1, 28, 28)
    # All the classes are still there, 10 each.
    assert torch.bincount(data.train.labels).tolist() == [10, 10, 10]

    session = TrainingSession(QUICK, data=data)
    metrics = session.run_epoch()
    session.close()
    assert "skipped_images" not in metrics  # nothing is left for the loop to drop
    assert math.isfinite(metrics["train_loss"])


def test_truncated_png_is_dropped_and_counted_when_streamed_under_skip_corrupt(truncated_tree) -> None:
    root, _ = truncated_tree

    data = load_dataset("imagefolder", root=str(root), in_memory=False, workers=1, skip_corrupt=True, **DIGITS)
    assert data.streamed and len(data.train) == 31  # streamed: not known to be unreadable before it is read

    session = TrainingSession(QUICK, data=data)
    try:
        metrics = [session.run_epoch(), session.run_epoch()]
    finally:
        session.close()

    # Counted in each epoch that met it, not summed over epochs.
    assert [epoch["skipped_images"] for epoch in metrics] == [1.0, 1.0]
    assert math.isfinite(metrics[-1]["train_loss"])


# --- stratified, seeded splits -------------------------------------------------------------------------

def _labels_per_split(scan: FolderScan) -> dict[str, np.ndarray]:
    return {part: np.bincount(getattr(scan, part).labels, minlength=len(scan.classes))
            for part in ("train", "val", "test")}


@pytest.mark.parametrize("val_fraction,test_fraction", [(0.2, 0.1), (0.3, 0.25), (0.05, 0.05)])
def test_splits_are_stratified_and_honour_the_fractions(digit_folders: Path, val_fraction: float,
                                                         test_fraction: float) -> None:
    scan = scan_imagefolder(digit_folders, val_fraction=val_fraction, test_fraction=test_fraction, seed=0)
    counts = _labels_per_split(scan)

    assert scan.layout == "split" and scan.images == 400
    for part, per_class in counts.items():
        assert (per_class >= 1).all(), f"a class is missing from {part}: {per_class}"
    # Per class: the test fraction of 40, then the validation fraction of what is left (within rounding).
    expected_test = 40 * test_fraction
    assert (np.abs(counts["test"] - expected_test) <= 1).all(), counts["test"]
    expected_val = (40 - counts["test"]) * val_fraction
    assert (np.abs(counts["val"] - expected_val) <= 1).all(), counts["val"]
    assert (counts["train"] + counts["val"] + counts["test"] == 40).all()
    # The three splits partition the files.
    every = [path for part in ("train", "val", "test") for path in getattr(scan, part).paths.tolist()]
    assert len(set(every)) == len(every) == 400


def test_same_seed_gives_the_same_split(digit_folders: Path) -> None:
    first = scan_imagefolder(digit_folders, val_fraction=0.2, test_fraction=0.1, seed=7)
    _scan.cache_clear()
    second = scan_imagefolder(digit_folders, val_fraction=0.2, test_fraction=0.1, seed=7)

    assert first is not second
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(first, part).paths, getattr(second, part).paths)
        assert np.array_equal(getattr(first, part).labels, getattr(second, part).labels)


def test_another_seed_moves_the_validation_split_but_not_the_test_split(digit_folders: Path) -> None:
    scans = [scan_imagefolder(digit_folders, val_fraction=0.2, test_fraction=0.1, seed=seed) for seed in (0, 1)]

    assert np.array_equal(scans[0].test.paths, scans[1].test.paths)
    assert not np.array_equal(scans[0].val.paths, scans[1].val.paths)
    # What is not test is shared between train and val either way.
    rest = [set(scan.train.paths.tolist()) | set(scan.val.paths.tolist()) for scan in scans]
    assert rest[0] == rest[1]
    # The test split is drawn with its own fixed seed: the same as a scan with seed=TEST_SPLIT_SEED.
    fixed = scan_imagefolder(digit_folders, val_fraction=0.2, test_fraction=0.1, seed=TEST_SPLIT_SEED)
    assert np.array_equal(fixed.test.paths, scans[0].test.paths)


def test_loaded_splits_follow_the_seed_the_same_way(digit_folders: Path) -> None:
    def load(seed: int):
        for cache in (load_dataset, _scan, _plan):  # decoded anew each time
            cache.cache_clear()
        return load_dataset("imagefolder", root=str(digit_folders), seed=seed, **DIGITS)

    zero, again, one = load(0), load(0), load(1)

    assert again is not zero
    assert torch.equal(zero.val.images, again.val.images) and torch.equal(zero.train.images, again.train.images)
    assert torch.equal(zero.test.images, one.test.images) and torch.equal(zero.test.labels, one.test.labels)
    assert not torch.equal(zero.val.images, one.val.images)


# --- split folders: root/train, root/val, root/test ----------------------------------------------------

def test_split_folders_are_the_splits(rgb_split_folders: Path) -> None:
    scan = _scan_default(rgb_split_folders)

    assert scan.layout == "folders"
    assert scan.classes == ("one", "three", "two", "zero")
    assert (len(scan.train), len(scan.val), len(scan.test)) == (120, 32, 32)
    for part in ("train", "val", "test"):
        folder = rgb_split_folders.resolve() / part
        split = getattr(scan, part)
        assert all(Path(split.path(index)).parent.parent == folder for index in range(len(split)))
        assert np.bincount(split.labels).tolist() == [len(split) // 4] * 4


@pytest.mark.parametrize("channels,mode", [(3, "RGB"), (1, "L")])
def test_split_folders_decode_to_the_channels_asked_for(rgb_split_folders: Path, channels: int, mode: str) -> None:
    data = load_dataset("imagefolder", root=str(rgb_split_folders), image_size=32, channels=channels)
    scan = _scan_default(rgb_split_folders)

    assert data.input_shape == (channels, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (120, 32, 32)
    assert data.train.images.shape == (120, channels, 32, 32)
    assert len(data.mean) == len(data.std) == channels
    for part in ("train", "val", "test"):
        split, files = getattr(data, part), getattr(scan, part)
        for index in (0, len(files) // 2, len(files) - 1):
            expected = _pil_pixels(files.path(index), mode)
            assert np.array_equal(split.images[index].numpy(), expected), (part, index)
    if channels == 1:  # really converted: the tinted RGB files' channels differ
        rgb = _pil_pixels(scan.train.path(0), "RGB")
        assert not np.array_equal(rgb[0], rgb[1])


def test_split_folders_without_val_split_it_off_train(tmp_path: Path, mnist) -> None:
    write_tree(tmp_path / "tree" / "train", *mnist, per_class=20, classes=3)
    write_tree(tmp_path / "tree" / "test", *mnist, per_class=4, classes=3, offset=20)

    scan = scan_imagefolder(tmp_path / "tree", val_fraction=0.25, test_fraction=0.1, seed=0)

    assert scan.layout == "folders"
    assert len(scan.test) == 12 and all("/test/" in scan.test.path(index) for index in range(12))
    assert np.bincount(scan.val.labels).tolist() == [5, 5, 5]
    assert np.bincount(scan.train.labels).tolist() == [15, 15, 15]


# --- in memory or streamed: the same training ----------------------------------------------------------

def test_in_memory_and_streamed_train_identically(digit_folders: Path) -> None:
    held = load_dataset("imagefolder", root=str(digit_folders), in_memory=True, workers=1, **DIGITS)
    streamed = load_dataset("imagefolder", root=str(digit_folders), in_memory=False, workers=1, **DIGITS)
    assert not held.streamed and streamed.streamed
    assert (held.mean, held.std) == (streamed.mean, streamed.std)
    assert [len(split) for split in (held.train, held.val, held.test)] == \
           [len(split) for split in (streamed.train, streamed.val, streamed.test)] == [290, 70, 40]

    histories = [train(QUICK, _never_stop, data=data) for data in (held, streamed)]

    assert len(histories[0]) == len(histories[1]) == 2
    for name in ("train_loss", "train_accuracy", "val_accuracy"):
        assert [metrics[name] for metrics in histories[0]] == [metrics[name] for metrics in histories[1]], name
    assert np.allclose([m["val_loss"] for m in histories[0]], [m["val_loss"] for m in histories[1]],
                       rtol=0, atol=1e-6)
    assert histories[0][-1]["train_loss"] < histories[0][0]["train_loss"]  # it did learn something
    assert "skipped_images" not in histories[1][-1]


def test_in_memory_auto_streams_past_the_memory_budget(digit_folders: Path) -> None:
    decoded = 400 * 1 * 28 * 28
    settings = {"root": str(digit_folders), "in_memory": "auto", **DIGITS}

    assert plan_source("imagefolder", {**settings, "memory_budget": decoded})["decoded_bytes"] == decoded
    assert plan_source("imagefolder", {**settings, "memory_budget": decoded})["in_memory"] is True
    assert plan_source("imagefolder", {**settings, "memory_budget": decoded - 1})["in_memory"] is False

    assert load_dataset("imagefolder", memory_budget=decoded - 1, **settings).streamed
    assert not load_dataset("imagefolder", memory_budget=decoded, **settings).streamed
    assert not load_dataset("imagefolder", root=str(digit_folders), **DIGITS).streamed  # default: 1 GiB
    # Explicit settings win over the budget.
    assert not load_dataset("imagefolder", root=str(digit_folders), in_memory=True, memory_budget=1, **DIGITS).streamed
    assert load_dataset("imagefolder", root=str(digit_folders), in_memory=False, **DIGITS).streamed


# --- normalization -------------------------------------------------------------------------------------

def test_given_mean_and_std_are_used_as_they_are(digit_folders: Path, rgb_split_folders: Path) -> None:
    gray = load_dataset("imagefolder", root=str(digit_folders), mean=[12.5], std=[50.25], **DIGITS)
    rgb = load_dataset("imagefolder", root=str(rgb_split_folders), image_size=32, channels=3,
                       mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])

    assert (gray.mean, gray.std) == ((12.5,), (50.25,))
    assert (rgb.mean, rgb.std) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))


@pytest.mark.parametrize("tree,channels,mode,size", [("digit_folders", 1, "L", 28), ("rgb_split_folders", 3, "RGB", 32)])
def test_computed_statistics_match_numpy_over_the_training_images(request, tree: str, channels: int, mode: str,
                                                                  size: int) -> None:
    root = request.getfixturevalue(tree)
    scan = _scan_default(root)
    assert len(scan.train) < 2048  # every training image counts
    pixels = np.stack([_pil_pixels(scan.train.path(index), mode) for index in range(len(scan.train))])
    pixels = pixels.astype(np.float64)
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))

    data = load_dataset("imagefolder", root=str(root), image_size=size, channels=channels)

    assert np.allclose(data.mean, mean, rtol=1e-9, atol=0) and len(data.mean) == channels
    assert np.allclose(data.std, std, rtol=1e-9, atol=0) and len(data.std) == channels
    # Over the training split only: the whole tree gives other numbers.
    every = np.concatenate([pixels, *(np.stack([_pil_pixels(getattr(scan, part).path(index), mode)
                                                for index in range(len(getattr(scan, part)))])
                                      for part in ("val", "test"))]).astype(np.float64)
    assert not np.allclose(data.mean, every.mean(axis=(0, 2, 3)), rtol=1e-9, atol=0)


# --- class order and labels ----------------------------------------------------------------------------

@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streamed"])
def test_classes_are_ordered_by_folder_name_and_labels_follow_the_folders(digit_folders: Path, mnist,
                                                                          in_memory: bool) -> None:
    _, mnist_labels = mnist
    data = load_dataset("imagefolder", root=str(digit_folders), in_memory=in_memory, **DIGITS)
    scan = _scan_default(digit_folders)

    assert data.classes == SORTED_NAMES and data.classes[0] == "eight"
    assert data.num_classes == 10 and scan.classes == SORTED_NAMES
    for part in ("train", "val", "test"):
        split, files = getattr(data, part), getattr(scan, part)
        if in_memory:
            images, labels = split.images, split.labels
        else:
            items = [split.dataset[index] for index in range(len(split))]
            images, labels = torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])
        assert len(labels) == len(files)
        for index in range(len(files)):
            path = Path(files.path(index))
            name = data.classes[int(labels[index])]
            assert path.parent.name == name
            # The file is MNIST example <stem>: its digit's name is its class.
            assert NAMES[int(mnist_labels[int(path.stem)])] == name
            assert np.array_equal(images[index].numpy(), _pil_pixels(path, "L")), path


# --- plug-in dataset factories -------------------------------------------------------------------------

PLUGIN_SOURCE = textwrap.dedent('''
    import numpy as np
    import torch
    from PIL import Image

    CLASSES = ["cat", "dog", "emu"]


    class Items(torch.utils.data.Dataset):
        def __init__(self, images, labels, kind):
            self.images, self.labels, self.kind = images, labels, kind

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            pixels = self.images[index]
            if self.kind == "float":
                image = torch.from_numpy(pixels.astype(np.float32) / 255)[None]
            elif self.kind == "uint8":
                image = torch.from_numpy(pixels.copy())[None]
            else:
                image = Image.fromarray(pixels, mode="L")
            return image, int(self.labels[index])


    def arrays(count):
        rng = np.random.default_rng(count)
        return rng.integers(0, 256, size=(count, 12, 12), dtype=np.uint8), np.arange(count) % 3


    def make(kind="float", count=30):
        images, labels = arrays(count)
        return (Items(images, labels, kind), Items(images[:9], labels[:9], kind), Items(images[:6], labels[:6], kind),
                CLASSES)


    def as_mapping(kind="pil"):
        train, val, test, classes = make(kind)
        return {"train": train, "val": val, "test": test, "classes": classes}


    def three_items():
        return make()[:3]


    def one_class():
        train, val, test, _ = make()
        return train, val, test, ["cat"]


    def train_not_a_dataset():
        _, val, test, classes = make()
        return None, val, test, classes


    def a_string():
        return "train, val, test, classes"
''')


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch) -> str:
    """A plug-in module written into tmp_path and importable; its name, unique to the test."""
    name = f"user_datasets_{abs(hash(str(tmp_path))):x}"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{name}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", ["float", "pil", "uint8"])
def test_plugin_dataset_items_become_uint8_images(plugin: str, kind: str) -> None:
    module = __import__(plugin)
    expected_images, expected_labels = module.arrays(30)

    data = load_dataset(factory=f"{plugin}:make", args={"kind": kind})

    assert data.name == f"{plugin}:make"
    assert data.classes == ("cat", "dog", "emu") and data.num_classes == 3
    assert not data.streamed and data.input_shape == (1, 12, 12)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 9, 6)
    assert data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(expected_images))
    assert torch.equal(data.train.labels, torch.from_numpy(expected_labels).long())
    assert np.isclose(data.mean[0], expected_images.astype(np.float64).mean(), rtol=1e-9)


def test_plugin_dataset_as_a_mapping_resized_and_streamed(plugin: str) -> None:
    mapped = load_dataset(factory=f"{plugin}:as_mapping")
    assert mapped.classes == ("cat", "dog", "emu") and mapped.input_shape == (1, 12, 12)

    resized = load_dataset(factory=f"{plugin}:make", args={"kind": "uint8"}, channels=3, image_size=16)
    assert resized.input_shape == (3, 16, 16) and resized.train.images.shape == (30, 3, 16, 16)
    assert torch.equal(resized.train.images[:, 0], resized.train.images[:, 2])  # gray made RGB

    streamed = load_dataset(factory=f"{plugin}:make", in_memory=False, workers=1)
    assert streamed.streamed and streamed.input_shape == (1, 12, 12)
    image, label = streamed.train.dataset[4]
    assert image.dtype == torch.uint8 and label == 1


@pytest.mark.parametrize("function,phrases", [
    ("three_items", ("returned tuple", "(train, val, test, classes)")),
    ("a_string", ("returned str", "(train, val, test, classes)")),
    ("one_class", ("1 class names", "at least two")),
    ("train_not_a_dataset", ("train split is a NoneType", "not a dataset", "__len__ and __getitem__")),
])
def test_plugin_dataset_that_returns_the_wrong_thing_is_a_clear_error(plugin: str, function: str,
                                                                       phrases: tuple[str, ...]) -> None:
    with pytest.raises(PluginError) as raised:
        load_dataset(factory=f"{plugin}:{function}")

    message = str(raised.value)
    assert f"{plugin}:{function}" in message and "\n" not in message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
