"""A store filled by a real search, the real dashboard serving it, and headless Chromium to drive it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
ARTIFACTS = Path(os.environ.get("HPSEARCH_ARTIFACTS", REPO / "artifacts")) / "screenshots"
# A short real search with both branches of each choice and early stopping, accuracy against latency,
# its top two configurations replicated with two new seeds each.
SEARCH_ARGS = ("digits-quick", "--set", "search.num_samples=6", "--set", "train.epochs=3",
               "--set", "search.scheduler.name=asha", "--set", "search.scheduler.reduction_factor=2",
               "--set", "search.replicates.top_k=2", "--set", "search.replicates.seeds=2",
               "--set", "search.objectives=[{metric: val_accuracy, mode: max}, {metric: latency_batch_ms, mode: min}]")


@pytest.fixture(scope="session")
def searched_store(tmp_path_factory) -> str:
    """A SQLite store holding one finished `digits-quick` search, made by the CLI as a user would."""
    folder = tmp_path_factory.mktemp("dashboard-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_cli("run", *SEARCH_ARGS, "--tracking-uri", uri, cwd=folder, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return uri


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DashboardServer:
    def __init__(self, tracking_uri: str, cwd: Path, *, refresh_s: float = 1.0, env: dict | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"dashboard-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hpsearch.platform.cli", "dashboard", "--tracking-uri", tracking_uri,
             "--port", str(self.port), "--refresh", str(refresh_s), *extra],
            cwd=cwd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dashboard exited: {self.log.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"dashboard did not listen within 60 s: {self.log.read_text()}")

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.log.read_text()


@pytest.fixture
def dashboard(searched_store, tmp_path):
    server = DashboardServer(searched_store, tmp_path)
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


def _chromium() -> tuple[str, str] | None:
    binary = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    driver = shutil.which(CHROMEDRIVER)
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Selenium. CI (.ci/run) installs it and sets HPSEARCH_REQUIRE_BROWSER,
    so there a missing browser fails rather than skips."""
    found = _chromium()
    if found is None:
        message = "chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("HPSEARCH_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1400,3800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
