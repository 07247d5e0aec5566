"""Shared fixtures: a real local Ray session on 127.0.0.1 and real MLflow stores in tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Before anything imports ray: keep every Ray server on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data"
HPSEARCH = [sys.executable, "-m", "hpsearch.platform.cli"]


def shared_mnist_root() -> Path:
    """The real MNIST mini split beside the repository; tests that need it skip without it."""
    if not (SHARED_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST files not found under {SHARED_MNIST} (they ship beside the repo in CI, "
                    f"not in a user's clone)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the in-process end-to-end tests, started as hpsearch starts it."""
    import ray

    from hpsearch.platform.search import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the hpsearch CLI as a user would, in `cwd`."""
    return subprocess.run([*HPSEARCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri(monkeypatch):
    """`mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI, which the next test's CLI would inherit."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


@pytest.fixture(scope="session")
def digit_folders(tmp_path_factory) -> Path:
    """A real ImageFolder tree of grayscale PNGs from the MNIST mini split: 10 classes x 40 images."""
    from tests.imagefolder_data import mnist_arrays, write_tree

    images, labels = mnist_arrays(shared_mnist_root())
    root = tmp_path_factory.mktemp("digit_folders")
    write_tree(root, images, labels, per_class=40)
    return root


@pytest.fixture(scope="session")
def rgb_split_folders(tmp_path_factory) -> Path:
    """An RGB ImageFolder tree with train/ val/ test/ folders (4 classes, 32x32 PNGs), from MNIST."""
    from tests.imagefolder_data import mnist_arrays, write_tree

    train_images, train_labels = mnist_arrays(shared_mnist_root())
    test_images, test_labels = mnist_arrays(shared_mnist_root(), "test")
    root = tmp_path_factory.mktemp("rgb_split_folders")
    write_tree(root / "train", train_images, train_labels, per_class=30, classes=4, rgb=True, size=32)
    write_tree(root / "val", train_images, train_labels, per_class=8, classes=4, rgb=True, size=32, offset=30)
    write_tree(root / "test", test_images, test_labels, per_class=8, classes=4, rgb=True, size=32)
    return root
