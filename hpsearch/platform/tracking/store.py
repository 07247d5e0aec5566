"""New SQLite tracking stores from a migrated template, not from MLflow's 60-odd schema migrations.

MLflow creates a SQLite store by running every Alembic migration since its first release: about
2 s on a laptop core, paid by every new project folder and every test's temporary store. The
result is the same empty schema each time, so hpsearch migrates one template per MLflow version,
in the user's cache folder, and copies it. The template holds no experiment: MLflow adds its
Default experiment, with an artifact location under the new store's working directory, when it
first opens the copy, as it would for a store it had created itself.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpsearch"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a `sqlite:///` store; None for any other URI."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def prepare_sqlite_store(tracking_uri: str) -> bool:
    """Create the store at a `sqlite:///` URI from the template if it does not exist yet.

    Safe when several processes do it at once (searches started together): each copies the template
    beside the store and gives its copy the store's name only if no store has it yet, so a reader never
    sees half a file, and no process's store is replaced under it. Missing folders are made here, not
    left to MLflow, whose own creation of a store is not safe to run twice at once.

    Returns True when this call made the store. Any other URI, an existing file, or a failure to make
    the template leaves the store to MLflow."""
    target = sqlite_path(tracking_uri)
    if target is None or target.exists():
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        template = _template()
        partial = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
        try:
            shutil.copyfile(template, partial)
            return _publish(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except (OSError, sqlite3.Error) as error:
        logger.debug("hpsearch: no store template (%s); MLflow creates the store", error)
        return False


def _publish(partial: Path, target: Path) -> bool:
    """Give the fully written `partial` the name `target` unless a file has that name already."""
    try:
        os.link(partial, target)  # unlike a rename, never replaces a store another process made and uses
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links (FAT, some network and FUSE mounts)
        import fcntl

        with open(target.with_name(f".{target.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if target.exists():
                return False
            os.replace(partial, target)
    return True


def sqlite_location_problem(tracking_uri: str) -> str | None:
    """Why a `sqlite:///` store cannot be opened or made there, told without MLflow; None if it can.

    Checked before a search starts Ray: a store path that cannot work stops it before anything runs."""
    target = sqlite_path(tracking_uri)
    if target is None:
        return None
    if target.exists():
        if not target.is_file():
            return f"{target} is not a file"
        return None if os.access(target, os.R_OK | os.W_OK) else f"{target} is not writable"
    folder = target.parent
    while not folder.exists():  # prepare_sqlite_store makes missing folders
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    return None if os.access(folder, os.W_OK | os.X_OK) else f"cannot create files in {folder}"


def _template() -> Path:
    import mlflow

    path = cache_folder() / f"mlflow-{mlflow.__version__}-empty.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        building = Path(folder) / "store.db"
        from hpsearch.platform.compat import create_sqlite_schema

        create_sqlite_schema(building, Path(folder) / "artifacts")
        with sqlite3.connect(building) as connection:  # MLflow remakes it, pointing at the copy's folder
            connection.execute("DELETE FROM experiments")
        os.replace(building, path)  # atomic: a concurrent maker's template is as good
    return path
