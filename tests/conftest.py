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
