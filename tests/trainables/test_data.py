"""Dataset loading and splitting: real scikit-learn digits, torchvision loaders on files written here,
and the real MNIST mini split beside the repository."""
from __future__ import annotations

import os
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar

from hpsearch.trainables import DatasetSplits, list_datasets, load_dataset
from tests.conftest import shared_mnist_root

DIGITS_COUNT = 1797
DIGITS_TEST_COUNT = 359  # round(1797 * 0.2), held out of every search


@pytest.fixture(autouse=True)
def _fresh_cache():
    """load_dataset is lru_cache'd: start and end each test uncached so results are recomputed."""
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


def _rows(images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(label, pixels...) per example, sorted, so splits can be compared as multisets."""
    rows = np.concatenate([labels.numpy()[:, None], images.reshape(len(labels), -1).numpy()], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# --- scikit-learn digits ---------------------------------------------------------------------------

def test_list_datasets_names_every_loader() -> None:
    assert {"digits", "mnist", "fashion_mnist", "cifar10"} <= set(list_datasets())


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.5])
def test_digits_split_sizes(val_fraction: float) -> None:
    data = load_dataset("digits", val_fraction=val_fraction)
    pool = DIGITS_COUNT - DIGITS_TEST_COUNT
    assert len(data.test) == DIGITS_TEST_COUNT
    assert len(data.val) == round(pool * val_fraction)
    assert len(data.train) + len(data.val) + len(data.test) == DIGITS_COUNT
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64


def test_digits_splits_partition_the_whole_dataset() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    every = _rows(torch.from_numpy(bunch.images.astype(np.uint8)), torch.from_numpy(bunch.target))
    data = load_dataset("digits")
    splits = [data.train, data.val, data.test]
    combined = _rows(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))
    # Same multiset of (label, image): no example lost, none used twice across train/val/test.
    np.testing.assert_array_equal(combined, every)


def _same_split(first: DatasetSplits, second: DatasetSplits) -> bool:
    return all(torch.equal(getattr(first, part).images, getattr(second, part).images)
               and torch.equal(getattr(first, part).labels, getattr(second, part).labels)
               for part in ("train", "val", "test"))


def test_digits_same_seed_gives_the_same_split() -> None:
    first = load_dataset("digits", seed=3)
    load_dataset.cache_clear()  # recompute, rather than get the cached object back
    second = load_dataset("digits", seed=3)
    assert first is not second
    assert _same_split(first, second)
    assert first.mean == second.mean and first.std == second.std


def test_digits_different_seed_gives_a_different_train_val_split_and_the_same_test() -> None:
    seed0 = load_dataset("digits", seed=0)
    seed1 = load_dataset("digits", seed=1)
    assert len(seed0.val) == len(seed1.val)
    assert not torch.equal(seed0.val.images, seed1.val.images)
    # The train+val pool is the same; only how it is divided changes.
    np.testing.assert_array_equal(
        _rows(torch.cat([seed0.train.images, seed0.val.images]), torch.cat([seed0.train.labels, seed0.val.labels])),
        _rows(torch.cat([seed1.train.images, seed1.val.images]), torch.cat([seed1.train.labels, seed1.val.labels])))
    assert torch.equal(seed0.test.images, seed1.test.images)
    assert torch.equal(seed0.test.labels, seed1.test.labels)


def test_digits_test_split_is_fixed_whatever_the_val_fraction() -> None:
    reference = load_dataset("digits")
    other = load_dataset("digits", val_fraction=0.5, seed=7)
    assert torch.equal(reference.test.images, other.test.images)
    assert torch.equal(reference.test.labels, other.test.labels)


def test_digits_normalization_stats_come_from_the_train_split() -> None:
    data = load_dataset("digits")
    pixels = data.train.images.double()
    assert data.mean == pytest.approx((float(pixels.mean()),))
    assert data.std == pytest.approx((float(pixels.std()),))
    assert 0 < data.mean[0] < 16 and 0 < data.std[0] < 16  # digits pixels are 0-16


def test_load_dataset_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnsit'; known: \[.*\] \(did you mean 'mnist'\?\)"):
        load_dataset("mnsit")


# --- torchvision loaders on files written by the test ----------------------------------------------

def _write_idx_images(path: Path, images: np.ndarray) -> None:
    count, height, width = images.shape
    # IDX header: magic 0x0803 (unsigned byte, 3 dimensions), then the sizes, all big-endian.
    path.write_bytes(struct.pack(">IIII", 0x0803, count, height, width) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, folder: str, *, train_count: int = 40, test_count: int = 15, seed: int = 0):
    """Random 28x28 images in the four raw IDX files torchvision's MNIST/FashionMNIST read."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written


MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_mnist_like_loader_reads_idx_files(name: str, tmp_path: Path) -> None:
    written = _write_mnist_like(tmp_path, MNIST_LIKE[name])
    data = load_dataset(name, root=str(tmp_path), val_fraction=0.25)

    assert data.name == name
    assert data.input_shape == (1, 28, 28)
    assert data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 15)
    test_images, test_labels = written["t10k"]
    assert torch.equal(data.test.images, torch.from_numpy(test_images)[:, None])
    assert torch.equal(data.test.labels, torch.from_numpy(test_labels).long())
    train_images, train_labels = written["train"]
    np.testing.assert_array_equal(
        _rows(torch.cat([data.train.images, data.val.images]), torch.cat([data.train.labels, data.val.labels])),
        _rows(torch.from_numpy(train_images)[:, None], torch.from_numpy(train_labels).long()))
    assert data.mean == pytest.approx((float(data.train.images.double().mean()),))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails at once, so a download that should be skipped can't hide."""
    def refuse(self, address):
        raise OSError(f"network disabled in this test (tried {address})")

    def refuse_lookup(host, *args, **kwargs):
        raise OSError(f"network disabled in this test (looked up {host})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_download_true_with_files_present_needs_no_network(name: str, tmp_path: Path, no_network) -> None:
    _write_mnist_like(tmp_path, MNIST_LIKE[name], train_count=20, test_count=5)
    data = load_dataset(name, root=str(tmp_path), download=True)
    assert (len(data.train) + len(data.val), len(data.test)) == (20, 5)
    assert not (tmp_path / MNIST_LIKE[name] / "raw" / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_dataset_without_download_raises_file_not_found(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="set dataset.download: true") as raised:
        load_dataset(name, root=str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(raised.value)


def test_mnist_with_only_the_train_files_is_not_found(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path, "MNIST")
    for path in (tmp_path / "MNIST" / "raw").glob("t10k-*"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="dataset MNIST not found"):
        load_dataset("mnist", root=str(tmp_path))


CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_cifar_like(root: Path, *, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10's python pickles: each batch a dict with `data` (N x 3072, channel-major) and `labels`.

    The channels get different ranges (red low, green mid, blue high) so that a channel mix-up shows.
    """
    rng = np.random.default_rng(seed)
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True)
    written = {}
    for batch in CIFAR_BATCHES:
        images = np.stack([rng.integers(low, low + 50, size=(per_batch, 32, 32)) for low in (0, 100, 200)],
                          axis=1).astype(np.uint8)  # N x C x H x W
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / batch, "wb") as file:
            pickle.dump({"data": images.reshape(per_batch, -1), "labels": labels}, file)
        written[batch] = (images, labels)
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": CIFAR_CLASSES}, file)
    return written


@pytest.fixture
def cifar_without_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's CIFAR10 only loads files whose md5 equals the real CIFAR-10's, which files made
    here can't have. Keep its existence check and skip only the md5 comparison; everything else
    (pickles, meta, channel layout, hpsearch's conversion and split) runs for real."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


def test_cifar10_loader_reads_pickled_batches_in_channel_order(tmp_path: Path, cifar_without_md5) -> None:
    written = _write_cifar_like(tmp_path)
    data = load_dataset("cifar10", root=str(tmp_path), val_fraction=0.25)

    assert data.input_shape == (3, 32, 32)
    assert data.num_classes == len(CIFAR_CLASSES)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 4)
    test_images, test_labels = written["test_batch"]
    assert torch.equal(data.test.images, torch.from_numpy(test_images))
    assert data.test.labels.tolist() == test_labels
    train_images = np.concatenate([written[batch][0] for batch in CIFAR_BATCHES[:5]])
    train_labels = sum((written[batch][1] for batch in CIFAR_BATCHES[:5]), [])
    np.testing.assert_array_equal(
        _rows(torch.cat([data.train.images, data.val.images]), torch.cat([data.train.labels, data.val.labels])),
        _rows(torch.from_numpy(train_images), torch.tensor(train_labels)))
    # Per-channel statistics, in R, G, B order: each channel was drawn from [low, low + 50).
    assert len(data.mean) == 3 and len(data.std) == 3
    for mean, low in zip(data.mean, (0, 100, 200)):
        assert low < mean < low + 50
    expected = data.train.images.double().mean(dim=(0, 2, 3)).tolist()
    assert data.mean == pytest.approx(tuple(expected))


def test_cifar10_download_true_with_files_present_needs_no_network(tmp_path: Path, cifar_without_md5,
                                                                  no_network) -> None:
    _write_cifar_like(tmp_path, per_batch=2)
    data = load_dataset("cifar10", root=str(tmp_path), download=True)
    assert (len(data.train) + len(data.val), len(data.test)) == (10, 2)


def test_cifar10_files_with_the_wrong_checksum_are_not_found(tmp_path: Path) -> None:
    # Without the md5 bypass, torchvision rejects these files as corrupted; hpsearch says how to fetch them.
    _write_cifar_like(tmp_path, per_batch=2)
    with pytest.raises(FileNotFoundError, match=r"dataset CIFAR10 not found .*set dataset.download: true"):
        load_dataset("cifar10", root=str(tmp_path))


# --- the real MNIST mini split ---------------------------------------------------------------------

MNIST_TEST_CLASS_COUNTS = [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]
MNIST_TRAIN_CLASS_COUNTS = [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]


def test_real_mnist_mini_split() -> None:
    root = shared_mnist_root()
    data = load_dataset("mnist", root=str(root), val_fraction=0.2, seed=0)

    assert (len(data.train), len(data.val), len(data.test)) == (6400, 1600, 2000)
    assert data.input_shape == (1, 28, 28)
    assert data.num_classes == 10
    assert torch.bincount(data.test.labels, minlength=10).tolist() == MNIST_TEST_CLASS_COUNTS
    pool_labels = torch.cat([data.train.labels, data.val.labels])
    assert torch.bincount(pool_labels, minlength=10).tolist() == MNIST_TRAIN_CLASS_COUNTS
    # MNIST is mostly black background: mean about 33, std about 78 in 0-255 pixel units.
    assert 30 < data.mean[0] < 37
    assert 74 < data.std[0] < 82
    assert int(data.train.images.max()) == 255 and int(data.train.images.min()) == 0


def test_idx_files_read_directly_equal_torchvisions_reading() -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from hpsearch.trainables.data import IDX_FILES, read_idx

    raw = shared_mnist_root() / "MNIST" / "raw"
    for images, labels in IDX_FILES.values():
        np.testing.assert_array_equal(read_idx(raw / images), read_image_file(str(raw / images)).numpy())
        np.testing.assert_array_equal(read_idx(raw / labels), read_label_file(str(raw / labels)).numpy())


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "not an IDX file"),
    (struct.pack(">II", 0x0D01, 3) + b"\0" * 12, "not an IDX file"),  # floats, not unsigned bytes
    (struct.pack(">IIII", 0x0803, 2, 28, 28) + b"\0" * 100, "holds 100 bytes of data for a shape of"),
])
def test_a_damaged_idx_file_is_reported(content: bytes, problem: str, tmp_path: Path) -> None:
    from hpsearch.trainables.data import read_idx

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        read_idx(path)


def test_mnist_files_on_disk_load_without_importing_torchvision(tmp_path: Path) -> None:
    """Each trial process loads its dataset: importing torchvision would cost it about 2 s."""
    import subprocess
    import sys

    _write_mnist_like(tmp_path, "MNIST", train_count=20, test_count=5)
    code = ("import sys; from hpsearch.trainables.data import load_dataset; "
            f"data = load_dataset('mnist', root={str(tmp_path)!r}); "
            "print(len(data.test), 'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["5", "False"], done.stderr
