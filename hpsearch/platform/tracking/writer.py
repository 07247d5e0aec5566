"""Trial runs: a Tune callback mirrors every trial into an MLflow child run of the search's run.

Trial runs are written from the driver by a background writer thread, so a trial never needs MLflow
or a path on the driver's disk, and the controller loop never waits on the tracking store. A trial's
run is found again by its Tune trial id, so a retried or restored trial continues its own run, and an
epoch that was already logged is never logged twice.

A write that fails because the store is out of reach (a tracking server down for longer than MLflow's
own retries, a SQLite file locked for too long) is kept, in order, and tried again with a growing
pause; the search trains on meanwhile and the live view says how far tracking is behind. Writes are
idempotent when replayed: a trial run is looked up by its trial id before one is created, and a
metric batch carries its original timestamps, which the store keys metrics by.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import queue
import threading
import time
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray import tune

from hpsearch.platform.errors import first_line
from hpsearch.platform.progress import error_line, trial_status
from hpsearch.platform.tracking.artifacts import log_checkpoint
from hpsearch.platform.tracking.index import TrialRuns, write_index
from hpsearch.platform.tracking.runs import client_for, find_search_run, param_value
from hpsearch.platform.tracking.tags import (ABLATION, ERROR, INFEASIBLE, NODE, PARENT, PROCESS, REPLICATE_OF, REPLICATE_SEED,
                                             ROLE, SEARCH_ID, STATUS, TRIAL_ID, redact_uri)
from hpsearch.search_spaces.space import flatten_config
from hpsearch.trainables.config import EPOCH_METRICS
from hpsearch.trainables.cost import COSTS

logger = logging.getLogger(__name__)
# MLflow prints a link per finished run for an http store: it would break into the live view.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
SNAPSHOT_EVERY_S = 30.0  # how often a running search's trial runs are snapshotted onto its parent run
SLOW_WRITE_S = 10.0  # a write the store has not answered for this long makes the live view say tracking is behind
RETRY_PAUSE_S = (1.0, 30.0)  # first and longest pause before a write the store refused is tried again
# MLflow error codes that say "not now" rather than "never": such a write is kept and tried again.
_TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                              "DEADLINE_EXCEEDED", "ABORTED", "UNAVAILABLE", "CANCELLED"})


def is_transient(error: BaseException) -> bool:
    """Whether a failed write may succeed later: the store was out of reach or busy, not the write wrong."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return error.error_code in _TRANSIENT_CODES
    return isinstance(error, (OSError, ConnectionError, TimeoutError)) or "locked" in str(error).lower() \
        or type(error).__module__.startswith(("requests", "urllib3", "sqlalchemy"))


@dataclass
class _TrialRun:
    run_id: str
    last_step: int  # the last epoch already in MLflow; later reports log only epochs after it
    process: tuple[str, str] | None = None  # (node label, pid) last tagged: a retried trial may move
    checkpoint_node: str | None = None  # the Ray node that wrote the trial's latest (best) checkpoint
    params: list = field(default_factory=list)  # params not yet written: they go with the next write


@dataclass(frozen=True)
class _Write:
    """One queued write: a method of the tracker and its arguments, replayed as they are when it fails."""

    method: Callable[..., None]
    args: tuple
    what: str  # for messages: "result of trial 00003"


class TrialTracker(tune.Callback):
    """A Tune callback that mirrors every trial into an MLflow child run of the search's run.

    The parent run is given as (experiment id, run id) or, for a restored search (Tune pickles its
    callbacks without it), found again by the search id. With `role="replicate"` it writes the seed
    replicates of a finished search (replicates.py): runs tagged with the trial they repeat, no
    checkpoint uploads, no trial snapshot.
    """

    def __init__(self, *, tracking_uri: str, experiment: str, search_id: str, metric: str, epochs: int,
                 parent: tuple[str, str] | None = None, role: str = "trial") -> None:
        self.role = role
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.search_id = search_id
        self.metric = metric
        self.epochs = epochs
        self.failure: BaseException | None = None
        self._parent = parent
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pending: collections.deque[_Write] = collections.deque()  # taken off the queue, not yet written
        self._behind_since: float | None = None  # the first failure of the write that waits
        self._writing_since: float | None = None  # when the write under way, or last failed, began
        self._last_error = ""
        self._stopping = threading.Event()  # set when a Ctrl-C gives up on what is unwritten
        self._closing = False  # the search ended: write what waits, then stop

    # Tune pickles its callbacks with the experiment; all but the settings is rebuilt in setup.
    def __getstate__(self) -> dict[str, Any]:
        keep = ("tracking_uri", "experiment", "search_id", "metric", "epochs", "role")
        return {key: self.__dict__[key] for key in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def setup(self, **info) -> None:
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, name="hpsearch-mlflow", daemon=True)
        self._thread.start()

    # ---- Tune events, called on the driver's controller loop: only enqueue.
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        replicate = trial.config.get("replicate")
        if replicate is not None:  # the repeated trial's params as its run has them, and the new seed
            extra = {REPLICATE_OF: replicate["of"], REPLICATE_SEED: str(replicate["seed"])}
            if "variant" in replicate:  # an ablation run: which technique it switches off
                extra[ABLATION] = replicate["variant"]
            self._put(self._write_start, trial.trial_id, {**replicate["params"], "seed": replicate["seed"]}, extra)
        else:
            self._put(self._write_start, trial.trial_id, flatten_config(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._put(self._write_result, trial.trial_id, dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status = trial_status(trial, self.epochs, ended=True)
        reason = divergence_reason(trial.last_result or {}) if status == "diverged" else None
        self._put(self._write_end, trial.trial_id, status, reason, trial.checkpoint)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._put(self._write_end, trial.trial_id, "failed", error_line(trial), trial.checkpoint)

    def on_experiment_end(self, trials, **info) -> None:
        self._put(self._write_orphans, "", {trial.trial_id for trial in trials})
        self.flush()

    # ---- state for the live view
    def backlog(self) -> tuple[int, float, str] | None:
        """(writes waiting, seconds behind, what the store said) while the store is out of reach, or
        while one write has waited longer than SLOW_WRITE_S on it (MLflow's own retries of an HTTP
        request take minutes before they give up)."""
        waiting = len(self._pending) + (self._queue.qsize() if self._queue is not None else 0)
        if self._behind_since is not None:
            return waiting, time.monotonic() - self._behind_since, self._last_error
        started = self._writing_since
        if started is not None and time.monotonic() - started > SLOW_WRITE_S:
            return waiting, time.monotonic() - started, "no answer yet"
        return None

    def flush(self) -> None:
        """Wait until every write is in the store. While the store is out of reach this says so every
        30 s; a Ctrl-C gives up on what is still unwritten, and says how much that is."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._queue.put(None)
        told = time.monotonic()
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=1.0)
                backlog = self.backlog()
                if backlog and time.monotonic() - told >= 30.0:
                    told = time.monotonic()
                    print(f"waiting for the tracking store {redact_uri(self.tracking_uri)}: {backlog[0]} writes "
                          f"not yet written ({backlog[2]}); Ctrl-C gives them up", flush=True)
        except KeyboardInterrupt:
            self._stopping.set()
            backlog = self.backlog()
            print(f"gave up on {backlog[0] if backlog else 0} writes to the tracking store; the search's runs in "
                  f"MLflow are incomplete", flush=True)

    def _put(self, method: Callable[..., None], trial_id: str, *payload: Any) -> None:
        if self._queue is None:
            self.setup()
        what = f"{method.__name__.removeprefix('_write_')} of trial {_trial_name(trial_id)}" if trial_id \
            else method.__name__.removeprefix("_write_")
        self._queue.put(_Write(method, (trial_id, *payload), what))

    # ---- the writer thread
    def _write_loop(self) -> None:
        try:
            self._connect()
        except Exception as error:  # nothing can be tracked: TrackingGuard stops the search
            self.failure = error
            logger.error("hpsearch: cannot reach the MLflow tracking store %s: %s", redact_uri(self.tracking_uri),
                         error)
        next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        while not self._stopping.is_set():
            if not self._closing:
                try:
                    item = self._queue.get(timeout=0.0 if self._pending else max(0.0, next_snapshot - time.monotonic()))
                except queue.Empty:
                    item = False
                while item:  # and all that waits: a write can see what follows it (_result_waits)
                    self._pending.append(item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = False
                if item is None:
                    self._closing = True
            if self.failure is not None:
                self._pending.clear()
                if self._closing:
                    return
                continue
            if time.monotonic() >= next_snapshot and self._behind_since is None and self.role == "trial":
                self._pending.append(_Write(self._write_snapshot, ("",), "trial snapshot"))
                next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
            if self._pending:
                self._write_pending()
            elif self._closing:
                return

    def _write_pending(self) -> None:
        """Write the oldest waiting write; on a transient failure pause, and keep it for the next try."""
        item = self._pending[0]
        self._writing_since = time.monotonic()
        try:
            item.method(*item.args)
        except Exception as error:  # noqa: BLE001  (a tracking hiccup must not end the search)
            if not is_transient(error):
                logger.error("hpsearch: could not write the %s to MLflow: %s", item.what, first_line(error))
                self._pending.popleft()
                return
            self._wait_for_store(error)
            return
        self._pending.popleft()
        self._writing_since = None
        if self._behind_since is not None:
            logger.warning("hpsearch: the tracking store answers again after %.0f s", time.monotonic()
                           - self._behind_since)
            self._behind_since, self._last_error = None, ""

    def _wait_for_store(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
            logger.warning("hpsearch: the tracking store %s is out of reach (%s); the search goes on and its "
                           "writes wait", redact_uri(self.tracking_uri), first_line(error))
        self._last_error = first_line(error)[:200]
        first, longest = RETRY_PAUSE_S
        pause = min(longest, max(first, (now - self._behind_since) / 2))
        # Keep taking Tune's events meanwhile, so the queue is drained in order behind the pending ones.
        deadline = now + pause
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._closing = True
                self._stopping.wait(max(0.0, deadline - time.monotonic()))
                break
            self._pending.append(item)

    def _write_snapshot(self, _trial_id: str) -> None:
        """The search's trial runs as one artifact, for readers of large searches (see index.py)."""
        if self._snapshot.refresh(self._client):
            write_index(self._client, self._snapshot)

    def _connect(self) -> None:
        self._client = client_for(self.tracking_uri)
        if self._parent is not None:
            self.experiment_id, self.parent_run_id = self._parent
        else:
            found = find_search_run(self._client, experiment=self.experiment, search_id=self.search_id)
            self.experiment_id, self.parent_run_id = found.info.experiment_id, found.info.run_id
        self._runs = self._existing_trial_runs()
        self._snapshot = TrialRuns(self.experiment_id, self.parent_run_id)

    def _existing_trial_runs(self, trial_id: str | None = None) -> dict[str, _TrialRun]:
        query = f"tags.`{PARENT}` = '{self.parent_run_id}' and tags.`{ROLE}` = '{self.role}'"
        if trial_id is not None:
            query += f" and tags.`{TRIAL_ID}` = '{trial_id}'"
        runs = self._client.search_runs([self.experiment_id], filter_string=query, max_results=50000)
        return {run.data.tags[TRIAL_ID]: _TrialRun(run.info.run_id, int(run.data.metrics.get("epoch", 0)))
                for run in runs if TRIAL_ID in run.data.tags}

    def _write_orphans(self, _trial_id: str, live: set[str]) -> None:
        """A run still "running" whose trial Tune no longer has (lost in a crash before a snapshot
        recorded it) is marked interrupted rather than left looking alive."""
        for trial_id in set(self._runs) - live:
            run_id = self._runs[trial_id].run_id
            if self._client.get_run(run_id).info.status == "RUNNING":
                self._client.set_tag(run_id, STATUS, "interrupted")
                self._client.set_terminated(run_id, "KILLED")

    def _write_start(self, trial_id: str, params: dict[str, Any], extra_tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Param

        # A retried or restored trial continues its own run; so does a start replayed after a failure,
        # when the store may have made its run but its answer was lost (looked up only then).
        known = self._runs.get(trial_id)
        if known is None and self._behind_since is not None:
            known = self._existing_trial_runs(trial_id).get(trial_id)
        if known is not None:
            self._runs[trial_id] = known
            self._client.update_run(known.run_id, status="RUNNING")
            self._client.set_tag(known.run_id, STATUS, "running")
            return
        tags = {PARENT: self.parent_run_id, ROLE: self.role, TRIAL_ID: trial_id, SEARCH_ID: self.search_id,
                STATUS: "running", **(extra_tags or {})}
        name = _trial_name(trial_id)
        if extra_tags and ABLATION in extra_tags:
            name = f"ablation_{extra_tags[REPLICATE_OF]}_{extra_tags[ABLATION]}_off_seed{extra_tags[REPLICATE_SEED]}"
        elif extra_tags:
            name = f"replicate_{extra_tags[REPLICATE_OF]}_seed{extra_tags[REPLICATE_SEED]}"
        run = self._client.create_run(self.experiment_id, tags=tags, run_name=name)
        entry = self._runs[trial_id] = _TrialRun(run.info.run_id, last_step=0)
        logged = [Param(k, param_value(v)) for k, v in params.items()]
        if self._result_waits(trial_id):  # behind: the params go with the result, one write instead of two
            entry.params = logged
        elif logged:
            self._client.log_batch(run.info.run_id, params=logged)

    def _result_waits(self, trial_id: str) -> bool:
        """Whether a result of `trial_id` already waits behind the write under way (short trials, or a
        writer behind its search)."""
        return any(item.method == self._write_result and item.args[0] == trial_id
                   for item in itertools.islice(self._pending, 1, _LOOK_AHEAD))

    def _write_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._runs[trial_id]
        step = int(result.get("epoch", 0))
        if step == 0 and result.get("infeasible"):  # ended before training: its costs, and why
            self._write_infeasible(run, result)
            return
        if step <= run.last_step:  # replayed after a restore: already in MLflow
            return
        timestamp = int(result.get("timestamp", time.time()) * 1000)
        metrics = [Metric(name, float(value), timestamp, step) for name, value in result.items()
                   if name in _LOGGED_METRICS and isinstance(value, (int, float))
                   and (step == 1 or name not in _COSTS_ONCE)]  # every result carries the costs: logged once
        tags = []
        if result.get("infeasible"):
            tags.append(RunTag(INFEASIBLE, str(result.get("broken", ""))[:5000]))
        process = (node_label(result), str(result.get("pid", "?")))
        if process != run.process:  # its first report, or its first after a retry elsewhere
            tags += [RunTag(NODE, process[0]), RunTag(PROCESS, process[1])]
        self._client.log_batch(run.run_id, metrics=metrics, tags=tags, params=run.params)
        # Only once written: a write replayed after a failure must not find its step already counted.
        run.params = []
        run.process = process
        if result.get("best_epoch") == step:  # improved: SearchTrial checkpointed this epoch, on this node
            run.checkpoint_node = result.get("node_id")
        run.last_step = step

    def _write_infeasible(self, run: _TrialRun, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        timestamp = int(result.get("timestamp", time.time()) * 1000)
        metrics = [Metric(name, float(value), timestamp, 0) for name, value in result.items()
                   if name in COSTS and isinstance(value, (int, float)) and math.isfinite(value)]
        self._client.log_batch(run.run_id, metrics=metrics, params=run.params, tags=[
            RunTag(INFEASIBLE, str(result.get("broken", ""))[:5000]),
            RunTag(NODE, node_label(result)), RunTag(PROCESS, str(result.get("pid", "?")))])
        run.params = []

    def _write_end(self, trial_id: str, status: str, error: str | None, checkpoint) -> None:
        run = self._runs.get(trial_id)
        if run is None:  # failed before it started
            self._write_start(trial_id, {})
            run = self._runs[trial_id]
        # A replicate's checkpoint stays with Tune; a trial ended before training has nothing to keep.
        if checkpoint is not None and self.role == "trial" and not (status == "infeasible" and run.last_step == 0):
            try:
                log_checkpoint(self._client, run.run_id, checkpoint, node_id=run.checkpoint_node,
                               tracking_uri=self.tracking_uri)
            except Exception as upload_error:  # noqa: BLE001
                if is_transient(upload_error):
                    raise  # the whole end is tried again once the store answers
                # The run still ends: a trial whose checkpoint could not be kept is not left "running".
                error = (error + "; " if error else "") + f"checkpoint not uploaded: {first_line(upload_error)}"
                logger.warning("hpsearch: the checkpoint of trial %s was not uploaded: %s", _trial_name(trial_id),
                               first_line(upload_error))
        from mlflow.entities import RunTag

        # The status and the error in one write, with any params not yet written (no result came).
        tags = [RunTag(STATUS, status), *([RunTag(ERROR, error[:5000])] if error else [])]
        self._client.log_batch(run.run_id, tags=tags, params=run.params)
        run.params = []
        self._client.set_terminated(run.run_id, "FAILED" if status == "failed" else "FINISHED")


def divergence_reason(result: Mapping[str, Any]) -> str:
    bad = [f"{name}={result.get(name)}" for name in ("train_loss", "val_loss")
           if not isinstance(result.get(name), (int, float)) or not math.isfinite(result[name])]
    return f"diverged at epoch {result.get('epoch', '?')}: {', '.join(bad) or 'non-finite loss'}"


class TrackingGuard(tune.Stopper):
    """Stops the search when the tracking store cannot be reached: untracked trials are lost work."""

    def __init__(self, tracker: TrialTracker) -> None:
        self.tracker = tracker

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.tracker.failure is not None


def node_label(result: Mapping[str, Any]) -> str:
    """The NODE tag: host, IP and Ray node id, which tells apart nodes that share a host or an IP."""
    node_id = str(result.get("node_id", "?"))[:12]
    return f"{result.get('hostname', '?')} ({result.get('node_ip', '?')}, node {node_id})"


_LOOK_AHEAD = 64  # queued writes looked through for a trial's result waiting behind its start
_COSTS_ONCE = frozenset(COSTS) - {"peak_memory_mb"}  # peak memory grows as training goes: logged each epoch
_LOGGED_METRICS = frozenset({*EPOCH_METRICS, *COSTS, "epoch", "best_epoch", "skipped_images", "sparsity",
                             *(f"best_{name}" for name in EPOCH_METRICS)})


def _trial_name(trial_id: str) -> str:
    return f"trial_{trial_id.rsplit('_', 1)[-1]}"
