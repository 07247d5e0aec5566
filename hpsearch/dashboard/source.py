"""What the dashboard reads, through MLflow only, kept in memory and brought up to date cheaply.

A search's trial runs come from its snapshot plus the runs that are new or changed since
(`hpsearch.platform.tracking.index`); learning curves come from one bulk query for all selected runs,
and a finished run's curve is never fetched twice. Nothing here writes to the store.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from hpsearch.dashboard.data import hashable_params
from hpsearch.platform import query
from hpsearch.platform.compat import metric_histories
from hpsearch.platform.tracking.index import TrialRuns
from hpsearch.platform.tracking.tags import resolve_uri

CURVE_POINTS = 1000  # per trial and metric: more epochs than this are sampled by the store


@dataclass
class SearchData:
    search: query.Search
    runs: TrialRuns
    trials: pd.DataFrame
    fetched_at: float  # time.monotonic() of the last look at the store
    version: int = 1  # goes up with every look that found something new or changed
    seen_in: dict[str, int] = field(default_factory=dict)  # trial -> version it first appeared in
    changed_in: dict[str, int] = field(default_factory=dict)  # trial -> version it last changed in

    def rows_since(self, version: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Trials new since `version`, and trials changed since it: what a page showing it lacks."""
        added = [t for t, v in self.seen_in.items() if v > version]
        updated = [t for t, v in self.changed_in.items() if v > version and self.seen_in[t] <= version]
        return self.trials[self.trials["trial"].isin(added)], self.trials[self.trials["trial"].isin(updated)]


class RunSource:
    """Reads searches, trials and curves from one tracking store; safe to share between requests."""

    def __init__(self, tracking_uri: str | None = None, *, max_age_s: float = 2.0) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.max_age_s = max_age_s  # a page refreshing faster than this shares one look at the store
        self._searches: dict[str, SearchData] = {}
        self._curves: dict[tuple[str, str], pd.DataFrame] = {}  # (run_id, metric) of finished runs
        self._lock = threading.Lock()
        self.memo: dict = {}  # results callbacks keep between looks (importance)

    def searches(self) -> pd.DataFrame:
        return query.searches(self.tracking_uri)

    def search(self, search_id: str, *, refresh: bool = True, status: str | None = None) -> SearchData:
        """A search's trials: read on first use, then only what is new or changed.

        `status`, the search's status as just listed, spares finished searches a look at the store
        (one that was resumed reads as running again)."""
        with self._lock:
            data = self._searches.get(search_id)
            if data is not None and status is not None and status == data.search.status != "running":
                refresh = False
            if data is None:
                found = query.find_search(search_id, self.tracking_uri)
                runs = TrialRuns.load(self.client, experiment_id=found.experiment_id, parent_run_id=found.run_id)
                trials = _trials(runs.frame, found)
                data = SearchData(found, runs, trials, time.monotonic())
                data.seen_in = dict.fromkeys(trials["trial"], 1)
                data.changed_in = dict(data.seen_in)
                self._searches[search_id] = data
            elif refresh and time.monotonic() - data.fetched_at >= self.max_age_s:
                self._refresh(data)
            return data

    def _refresh(self, data: SearchData) -> None:
        changed_runs = data.runs.refresh(self.client)
        data.fetched_at = time.monotonic()
        status = data.search.status
        data.search = query.find_search(data.search.run_id, self.tracking_uri)  # running, or resumed
        if not changed_runs and data.search.status == status:
            return
        data.version += 1
        before = data.trials.set_index("trial")["status"]
        data.trials = _trials(data.runs.frame, data.search)
        # New or changed runs, and trials whose shown status changed with the search's (a silent driver).
        changed = data.trials.loc[data.trials["run_id"].isin(data.runs.last_changed if changed_runs else [])
                                  | (data.trials["status"] != data.trials["trial"].map(before)), "trial"]
        for trial in changed:
            data.seen_in.setdefault(trial, data.version)
            data.changed_in[trial] = data.version

    def curves(self, search_id: str, trials: Sequence[str], metric: str) -> pd.DataFrame:
        """Learning curves of the given trials in long form: trial, step, value."""
        data = self.search(search_id, refresh=False)
        table = data.trials.set_index("trial")
        chosen = [trial for trial in trials if trial in table.index]
        run_ids = {table.at[trial, "run_id"]: trial for trial in chosen}
        finished = {run_id for run_id in run_ids if table.at[run_ids[run_id], "status"] != "running"}
        missing = [run_id for run_id in run_ids if (run_id, metric) not in self._curves]
        fetched: dict[str, pd.DataFrame] = {}
        if missing:
            fetched = self._metric_histories(missing, metric)
            for run_id in missing:
                points = fetched.get(run_id, _EMPTY)
                if run_id in finished:
                    self._curves[(run_id, metric)] = points
                else:  # still running: fetch again next time
                    fetched[run_id] = points
        frames = []
        for run_id, trial in run_ids.items():
            points = self._curves.get((run_id, metric))
            if points is None:
                points = fetched.get(run_id, _EMPTY)
            if not points.empty:
                frames.append(points.assign(trial=trial))
        if not frames:
            return pd.DataFrame(columns=["trial", "step", "value"])
        return pd.concat(frames, ignore_index=True)[["trial", "step", "value"]]

    def _metric_histories(self, run_ids: list[str], metric: str) -> dict[str, pd.DataFrame]:
        """One query for many runs where the store has one; else one request per run."""
        return _by_run(metric_histories(self.client, run_ids, metric, max_points=CURVE_POINTS))


_EMPTY = pd.DataFrame(columns=["step", "value"])


def _trials(runs: pd.DataFrame, search: query.Search) -> pd.DataFrame:
    return hashable_params(query.with_search_status(query.trials_frame(runs, metric=search.metric), search.status))


def _by_run(rows: list[tuple[str, int, float]]) -> dict[str, pd.DataFrame]:
    frame = pd.DataFrame(rows, columns=["run_id", "step", "value"])
    frame = frame.drop_duplicates(["run_id", "step"], keep="last").sort_values(["run_id", "step"])
    return {run_id: group[["step", "value"]].reset_index(drop=True) for run_id, group in frame.groupby("run_id")}
