"""A search's trial runs, read once and then kept current by fetching only what is new or changed.

`mlflow.search_runs` over a 10,000-trial search takes seconds (the store loads every run's
params, tags and metrics row by row). So the search's driver keeps a snapshot of its trial runs
on the parent run, `index/trials.parquet`, refreshed as the search goes and rewritten in full when
it ends. A reader loads the snapshot (tens of milliseconds) and catches up with three small
queries: runs started since the snapshot's newest start, runs the snapshot saw running, and runs
running now (a resumed search reopens runs). A search without a snapshot is read in full once.

The frame has `mlflow.search_runs`'s shape: run_id, experiment_id, status, start_time, end_time,
then tags.*, params.* and metrics.* (latest values), so everything downstream reads either.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from hpsearch.platform.tracking.tags import PARENT, ROLE

INDEX_ARTIFACT_DIR = "index"
INDEX_FILE = "trials.parquet"
INDEX_TAG = "hpsearch.index_written_at"  # on the parent run: ms since the epoch of the last snapshot
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per snapshot read otherwise
_BASE_COLUMNS = ["run_id", "experiment_id", "status", "start_time", "end_time"]
_IN_CHUNK = 100  # run ids per `attributes.run_id IN (...)` query
_START_SLACK_MS = 1000  # runs started this close before the newest start seen are fetched again


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """MLflow `Run` entities as a `mlflow.search_runs`-shaped DataFrame (faster than converting twice)."""
    rows = []
    for run in runs:
        info, data = run.info, run.data
        row = {"run_id": info.run_id, "experiment_id": info.experiment_id, "status": info.status,
               "start_time": info.start_time, "end_time": info.end_time}
        row.update({f"tags.{key}": value for key, value in data.tags.items()})
        row.update({f"params.{key}": value for key, value in data.params.items()})
        row.update({f"metrics.{key}": value for key, value in data.metrics.items()})
        rows.append(row)
    return _typed(pd.DataFrame(rows))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=_BASE_COLUMNS)
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame


@dataclass
class TrialRuns:
    """The trial runs of one search, and what is needed to catch up with the store."""

    experiment_id: str
    parent_run_id: str
    frame: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_BASE_COLUMNS))
    loaded: bool = False
    snapshot_at: int | None = None  # INDEX_TAG of the snapshot this was loaded from
    last_fetched: int = 0  # runs fetched by the latest refresh
    last_changed: list[str] = field(default_factory=list)  # run ids new or different after the latest refresh

    @classmethod
    def load(cls, client, *, experiment_id: str, parent_run_id: str) -> TrialRuns:
        """From the search's snapshot when it has one, brought up to date; else read in full."""
        runs = cls(experiment_id, parent_run_id)
        snapshot = read_index(client, parent_run_id)
        if snapshot is not None:
            runs.frame, runs.snapshot_at = snapshot
            runs.loaded = True
        runs.refresh(client)
        return runs

    def refresh(self, client) -> int:
        """Fetch the runs that may be new or changed since the last look; returns how many are."""
        if not self.loaded:
            fetched = self._search(client, "")
            self.loaded = True
            self.frame = fetched
            self.last_changed = fetched["run_id"].tolist()
        else:
            fetched = self._changed(client)
            self.last_changed = _differing(self.frame, fetched)
            if self.last_changed:
                fetched = fetched[fetched["run_id"].isin(self.last_changed)]
                kept = self.frame[~self.frame["run_id"].isin(fetched["run_id"])]
                self.frame = pd.concat([kept, fetched], ignore_index=True) if not kept.empty else fetched
        self.last_fetched = len(fetched)
        return len(self.last_changed)

    def _changed(self, client) -> pd.DataFrame:
        parts = []
        if not self.frame.empty:
            newest = int(self.frame["start_time"].max().timestamp() * 1000)
            parts.append(self._search(client, f" and attributes.start_time >= {newest - _START_SLACK_MS}"))
            running = self.frame.loc[self.frame["status"] == "RUNNING", "run_id"].tolist()
            for start in range(0, len(running), _IN_CHUNK):
                ids = ", ".join(f"'{run_id}'" for run_id in running[start:start + _IN_CHUNK])
                parts.append(self._search(client, f" and attributes.run_id IN ({ids})"))
        else:
            parts.append(self._search(client, ""))
        parts.append(self._search(client, " and attributes.status = 'RUNNING'"))
        parts = [part for part in parts if not part.empty]
        if not parts:
            return pd.DataFrame(columns=_BASE_COLUMNS)
        return pd.concat(parts, ignore_index=True).drop_duplicates("run_id", keep="last")

    def _search(self, client, extra_filter: str) -> pd.DataFrame:
        runs, token = [], None
        while True:
            page = client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT}` = '{self.parent_run_id}'"
                                      + extra_filter, max_results=50000, page_token=token)
            # A search's seed replicates and final model are nested under it too, but are no trials.
            runs.extend(run for run in page if run.data.tags.get(ROLE, "trial") == "trial")
            token = page.token
            if not token:
                return runs_frame(runs)


def _differing(known: pd.DataFrame, fetched: pd.DataFrame) -> list[str]:
    """Run ids in `fetched` that `known` lacks or holds otherwise (missing values equal each other)."""
    if fetched.empty:
        return []
    if known.empty:
        return fetched["run_id"].tolist()
    old = known.set_index("run_id")
    new = fetched.set_index("run_id")
    present = new.index.isin(old.index)
    changed = new.index[~present].tolist()
    if present.any():
        columns = new.columns.union(old.columns)
        before = old.reindex(index=new.index[present], columns=columns).astype(object)
        after = new.loc[present].reindex(columns=columns).astype(object)
        same = (before == after) | (before.isna() & after.isna())
        changed += same.index[~same.all(axis=1)].tolist()
    return changed


def write_index(client, runs: TrialRuns) -> None:
    """Store `runs` as the search's snapshot, and its time on the parent run."""
    written_at = int(time.time() * 1000)
    frame = runs.frame.copy()
    frame.attrs = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / INDEX_FILE
        # Params, tags and metrics of runs in other branches are missing: keep columns as objects
        # or floats pyarrow can store, whatever the mix.
        for column in frame.columns:
            if column.startswith(("tags.", "params.")) or column in ("run_id", "experiment_id", "status"):
                frame[column] = frame[column].astype("string")
        frame.to_parquet(path, index=False)
        client.log_artifact(runs.parent_run_id, str(path), INDEX_ARTIFACT_DIR)
    client.set_tag(runs.parent_run_id, INDEX_TAG, str(written_at))
    runs.snapshot_at = written_at


def read_index(client, parent_run_id: str) -> tuple[pd.DataFrame, int] | None:
    """The search's snapshot and its time, or None when it has none (or it cannot be read)."""
    written_at = client.get_run(parent_run_id).data.tags.get(INDEX_TAG)
    if written_at is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(parent_run_id, f"{INDEX_ARTIFACT_DIR}/{INDEX_FILE}", folder)
            frame = pd.read_parquet(path)
        except Exception:  # noqa: BLE001  (a snapshot is only a shortcut: read the runs instead)
            return None
    for column in frame.columns:  # as a DataFrame built from the runs would hold them
        if isinstance(frame[column].dtype, pd.StringDtype):
            frame[column] = frame[column].astype("str")
    return frame, int(written_at)
