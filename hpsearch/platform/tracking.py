"""All MLflow writes: one parent run per search, one child run per trial.

Trial runs are written from the driver through a Tune callback and a background writer thread,
so a trial never needs MLflow or a path on the driver's disk, and the controller loop never
waits on the tracking store. A trial's run is found again by its Tune trial id, so a retried or
restored trial continues its own run, and an epoch that was already logged is never logged twice.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hpsearch import __version__
from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray import tune

from hpsearch.platform.errors import first_line
from hpsearch.platform.index import TrialRuns, write_index
from hpsearch.platform.progress import error_line, trial_status
from hpsearch.platform.space import flatten_config
from hpsearch.trainables.config import EPOCH_METRICS

logger = logging.getLogger(__name__)
# MLflow prints a link per finished run for an http store: it would break into the live view.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
SNAPSHOT_EVERY_S = 30.0  # how often a running search's trial runs are snapshotted onto its parent run

from hpsearch.platform.tags import (ALGORITHM, CHECKPOINT_ARTIFACT, ERROR, EXPERIMENT_PATH, METRIC, MODE, NODE,
                                   PARENT, PLANNED_TRIALS, PROCESS, ROLE, SEARCH_ID, SEARCH_NAME, SPEC_ARTIFACT, STATUS,
                                   TRIAL_ID, CREDENTIAL_VARIABLES, redact_uri)


class TrackingUnavailable(RuntimeError):
    """The tracking store could not be reached or written."""


def client_for(tracking_uri: str):
    """A client for writing; a new SQLite store starts as a copy of a migrated template (store.py)."""
    from mlflow.tracking import MlflowClient

    from hpsearch.platform.store import prepare_sqlite_store

    prepare_sqlite_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id_for(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def start_search_run(client, *, experiment_id: str, spec, search_id: str, experiment_path: str,
                     spec_yaml: str, planned_trials: int) -> str:
    """Create the parent run of a search, with its spec as an artifact."""
    from mlflow.entities import Param

    tags = {
        ROLE: "search", SEARCH_ID: search_id, SEARCH_NAME: spec.name, STATUS: "running",
        "hpsearch.spec_hash": spec.spec_hash(), ALGORITHM: spec.search.algorithm,
        METRIC: spec.search.metric, MODE: spec.search.mode, "hpsearch.version": __version__,
        EXPERIMENT_PATH: experiment_path, PLANNED_TRIALS: str(planned_trials),
        "mlflow.runName": search_id,
    }
    commit = git_commit()
    if commit:
        tags["hpsearch.git_commit"] = commit
    run = client.create_run(experiment_id, tags=tags, run_name=search_id)
    settings = {
        "dataset": spec.dataset.name, "algorithm": spec.search.algorithm, "metric": spec.search.metric,
        "mode": spec.search.mode, "num_samples": spec.search.num_samples,
        "scheduler": spec.search.scheduler.name, "epochs": spec.train.epochs,
        "max_concurrent": spec.search.max_concurrent, "seed": spec.search.seed,
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in settings.items()])
    client.log_text(run.info.run_id, spec_yaml, SPEC_ARTIFACT)
    return run.info.run_id


def finish_search_run(client, run_id: str, *, status: str, best_value: float | None, metric: str,
                      counts: Mapping[str, int]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"trials_{name}", float(count), now, 0) for name, count in counts.items()]
    if best_value is not None:
        metrics.append(Metric(f"best_{metric}", float(best_value), now, 0))
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, STATUS, status)
    mlflow_status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
    client.set_terminated(run_id, mlflow_status)


def write_final_snapshot(client, *, experiment_id: str, parent_run_id: str) -> None:
    """The trial runs as the search leaves them, read in full (test metrics land on a finished run)."""
    runs = TrialRuns(experiment_id, parent_run_id)
    runs.refresh(client)
    write_index(client, runs)


def log_lr_find(spec, *, params: Mapping[str, Any], suggested_lr: float, files: list[Path]) -> str:
    """An lr range test as its own run in the spec's experiment: the configuration, the suggestion, the plot."""
    from mlflow.entities import Metric, Param

    client = client_for(spec.tracking_uri())
    experiment_id = experiment_id_for(client, spec.tracking.experiment)
    run = client.create_run(experiment_id, run_name=f"{spec.name}-lr-find",
                            tags={ROLE: "lr_find", SEARCH_NAME: spec.name})
    client.log_batch(run.info.run_id, metrics=[Metric("suggested_lr", suggested_lr, int(time.time() * 1000), 0)],
                     params=[Param(k, _param_value(v)) for k, v in params.items()])
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def log_test_evaluation(client, run_id: str, *, metrics: Mapping[str, float], confusion: list[list[int]]) -> None:
    """The best trial's test metrics, and its confusion matrix as CSV and PNG artifacts."""
    import tempfile

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()])
    client.set_tag(run_id, "hpsearch.best_trial", "true")
    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "confusion_matrix.csv"
        classes = range(len(confusion))
        rows = ["true\\predicted," + ",".join(map(str, classes))]
        rows += [f"{label}," + ",".join(map(str, row)) for label, row in zip(classes, confusion)]
        csv_path.write_text("\n".join(rows) + "\n")
        png_path = _confusion_png(confusion, Path(folder) / "confusion_matrix.png",
                                  title=f"test accuracy {metrics.get('test_accuracy', float('nan')):.4f}")
        client.log_artifact(run_id, str(csv_path), "evaluation")
        client.log_artifact(run_id, str(png_path), "evaluation")


def _confusion_png(confusion: list[list[int]], path: Path, *, title: str) -> Path:
    """The confusion matrix as a heat map with its counts, drawn with Pillow.

    Drawn directly rather than with matplotlib: importing and laying out a matplotlib figure took
    about half a second at the end of every search, for an image of a table of numbers.
    """
    from PIL import Image, ImageDraw, ImageFont

    size = len(confusion)
    cell, margin_left, margin_top, margin_bottom = 34, 62, 40, 44
    font = ImageFont.load_default(size=12)
    small = ImageFont.load_default(size=11)
    width, height = margin_left + size * cell + 12, margin_top + size * cell + margin_bottom
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((width / 2, 14), title, fill="black", font=font, anchor="mm")
    largest = max((max(row) for row in confusion), default=0) or 1
    for row in range(size):
        for column in range(size):
            count = confusion[row][column]
            shade = count / largest  # white to dark blue, like matplotlib's "Blues"
            color = tuple(round(light + (dark - light) * shade) for light, dark in zip((247, 251, 255), (8, 48, 107)))
            x, y = margin_left + column * cell, margin_top + row * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=color)
            if count:
                draw.text((x + cell / 2, y + cell / 2), str(count), font=small, anchor="mm",
                          fill="white" if shade > 0.5 else "black")
    grid_bottom = margin_top + size * cell
    draw.rectangle((margin_left - 1, margin_top - 1, margin_left + size * cell, grid_bottom), outline="black")
    for index in range(size):
        middle = index * cell + cell / 2
        draw.text((margin_left + middle, grid_bottom + 10), str(index), fill="black", font=small, anchor="mm")
        draw.text((margin_left - 10, margin_top + middle), str(index), fill="black", font=small, anchor="rm")
    draw.text((margin_left + size * cell / 2, height - 12), "predicted", fill="black", font=font, anchor="mm")
    label = Image.new("RGB", (60, 16), "white")
    ImageDraw.Draw(label).text((30, 8), "true", fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, margin_top + size * cell // 2 - 30))
    image.save(path)
    return path


def mark_interrupted(client, parent_run_id: str) -> None:
    """Trials still running when a search stops early wait, marked interrupted, for `hpsearch resume`."""
    runs = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                              filter_string=f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{STATUS}` = 'running'")
    for run in runs:
        client.set_tag(run.info.run_id, STATUS, "interrupted")
        client.set_terminated(run.info.run_id, "KILLED")


def reopen_search_run(client, run_id: str) -> None:
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, STATUS, "running")


@dataclass
class _TrialRun:
    run_id: str
    last_step: int  # the last epoch already in MLflow; later reports log only epochs after it
    process: tuple[str, str] | None = None  # (node label, pid) last tagged: a retried trial may move
    checkpoint_node: str | None = None  # the Ray node that wrote the trial's latest (best) checkpoint


class TrialTracker(tune.Callback):
    """A Tune callback that mirrors every trial into an MLflow child run of the search's run.

    The parent run is given as (experiment id, run id) or, for a restored search (Tune pickles its
    callbacks without it), found again by the search id.
    """

    def __init__(self, *, tracking_uri: str, experiment: str, search_id: str, metric: str, epochs: int,
                 parent: tuple[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.search_id = search_id
        self.metric = metric
        self.epochs = epochs
        self.failure: BaseException | None = None
        self._parent = parent
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    # Tune pickles its callbacks with the experiment; all but the settings is rebuilt in setup.
    def __getstate__(self) -> dict[str, Any]:
        keep = ("tracking_uri", "experiment", "search_id", "metric", "epochs")
        return {key: self.__dict__[key] for key in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def setup(self, **info) -> None:
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, name="hpsearch-mlflow", daemon=True)
        self._thread.start()

    # ---- Tune events, called on the driver's controller loop: only enqueue.
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._put("start", trial.trial_id, flatten_config(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._put("result", trial.trial_id, dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status = trial_status(trial, self.epochs, ended=True)
        reason = divergence_reason(trial.last_result or {}) if status == "diverged" else None
        self._put("end", trial.trial_id, (status, reason, trial.checkpoint))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._put("end", trial.trial_id, ("failed", error_line(trial), trial.checkpoint))

    def on_experiment_end(self, trials, **info) -> None:
        self._put("orphans", "", {trial.trial_id for trial in trials})
        self.flush()

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _put(self, kind: str, trial_id: str, payload: Any) -> None:
        if self._queue is None:
            self.setup()
        self._queue.put((kind, trial_id, payload))

    # ---- the writer thread
    def _write_loop(self) -> None:
        try:
            self._connect()
        except Exception as error:  # nothing can be tracked: TrackingGuard stops the search
            self.failure = error
            logger.error("hpsearch: cannot reach the MLflow tracking store %s: %s", redact_uri(self.tracking_uri),
                         error)
        while True:
            try:
                item = self._queue.get(timeout=SNAPSHOT_EVERY_S)
            except queue.Empty:
                item = ("snapshot", "", None)
            if item is None:
                return
            if self.failure is not None:
                continue
            kind, trial_id, payload = item
            try:
                getattr(self, f"_write_{kind}")(trial_id, payload)
                if kind != "snapshot" and time.monotonic() - self._snapshot_time >= SNAPSHOT_EVERY_S:
                    self._write_snapshot("", None)
            except Exception:  # a tracking hiccup must not end the search
                logger.exception("hpsearch: could not write %s of trial %s to MLflow", kind, trial_id)

    def _write_snapshot(self, _trial_id: str, _payload) -> None:
        """The search's trial runs as one artifact, for readers of large searches (see index.py)."""
        self._snapshot_time = time.monotonic()
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
        self._snapshot_time = time.monotonic()

    def _existing_trial_runs(self) -> dict[str, _TrialRun]:
        runs = self._client.search_runs(
            [self.experiment_id], filter_string=f"tags.{PARENT} = '{self.parent_run_id}'", max_results=50000)
        return {run.data.tags[TRIAL_ID]: _TrialRun(run.info.run_id, int(run.data.metrics.get("epoch", 0)),
                                                  NODE in run.data.tags)
                for run in runs if TRIAL_ID in run.data.tags}

    def _write_orphans(self, _trial_id: str, live: set[str]) -> None:
        """A run still "running" whose trial Tune no longer has (lost in a crash before a snapshot
        recorded it) is marked interrupted rather than left looking alive."""
        for trial_id in set(self._runs) - live:
            run_id = self._runs[trial_id].run_id
            if self._client.get_run(run_id).info.status == "RUNNING":
                self._client.set_tag(run_id, STATUS, "interrupted")
                self._client.set_terminated(run_id, "KILLED")


    def _write_start(self, trial_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        known = self._runs.get(trial_id)
        if known is not None:  # a retried or restored trial continues its own run
            self._client.update_run(known.run_id, status="RUNNING")
            self._client.set_tag(known.run_id, STATUS, "running")
            return
        tags = {PARENT: self.parent_run_id, ROLE: "trial", TRIAL_ID: trial_id, SEARCH_ID: self.search_id,
                STATUS: "running"}
        run = self._client.create_run(self.experiment_id, tags=tags, run_name=_trial_name(trial_id))
        self._client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        self._runs[trial_id] = _TrialRun(run.info.run_id, last_step=0)

    def _write_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._runs[trial_id]
        step = int(result.get("epoch", 0))
        if step <= run.last_step:  # replayed after a restore: already in MLflow
            return
        timestamp = int(result.get("timestamp", time.time()) * 1000)
        metrics = [Metric(name, float(value), timestamp, step) for name, value in result.items()
                   if name in _LOGGED_METRICS and isinstance(value, (int, float))]
        tags = []
        process = (node_label(result), str(result.get("pid", "?")))
        if process != run.process:  # its first report, or its first after a retry elsewhere
            tags += [RunTag(NODE, process[0]), RunTag(PROCESS, process[1])]
            run.process = process
        if result.get("best_epoch") == step:  # improved: SearchTrial checkpointed this epoch, on this node
            run.checkpoint_node = result.get("node_id")
        self._client.log_batch(run.run_id, metrics=metrics, tags=tags)
        run.last_step = step

    def _write_end(self, trial_id: str, payload) -> None:
        status, error, checkpoint = payload
        run = self._runs.get(trial_id)
        if run is None:  # failed before it started
            self._write_start(trial_id, {})
            run = self._runs[trial_id]
        if checkpoint is not None:
            _log_checkpoint(self._client, run.run_id, checkpoint, node_id=run.checkpoint_node,
                            tracking_uri=self.tracking_uri)
        self._client.set_tag(run.run_id, STATUS, status)
        if error:
            self._client.set_tag(run.run_id, ERROR, error[:5000])
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


def find_search_run(client, *, experiment: str, search_id: str):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id] if found else [],
                              filter_string=f"tags.`{SEARCH_ID}` = '{search_id}' and tags.`{ROLE}` = 'search'")
    if not runs:
        raise LookupError(f"no parent run of search {search_id!r} in experiment {experiment!r}")
    return runs[0]


def node_label(result: Mapping[str, Any]) -> str:
    """The NODE tag: host, IP and Ray node id, which tells apart nodes that share a host or an IP."""
    node_id = str(result.get("node_id", "?"))[:12]
    return f"{result.get('hostname', '?')} ({result.get('node_ip', '?')}, node {node_id})"


def _log_checkpoint(client, run_id: str, checkpoint, *, node_id: str | None = None,
                    tracking_uri: str | None = None) -> None:
    """The trial's best epoch's checkpoint (the only one Tune keeps) as the run's artifact.

    With Tune's storage on a local path, a checkpoint lies on the disk of the node whose trial wrote
    it. Which node that is, is decided by Ray node id, not by looking for the path on the driver: one
    path can exist on two hosts (same image, same working directory), and on a one-host test cluster
    every path exists everywhere. A checkpoint written on another node is uploaded by a small task
    pinned to that node, straight to the tracking store (through the tracking server's artifact proxy
    for an http URI). If that node is gone, the driver uploads the directory when it can read it
    (shared storage, `--storage`), and otherwise logs a warning: the search goes on without it.
    """
    import pyarrow.fs

    here = _driver_node_id()
    on_local_disk = isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)
    if node_id is None or here is None or node_id == here or not on_local_disk or tracking_uri is None:
        with checkpoint.as_directory() as directory:
            client.log_artifacts(run_id, directory, CHECKPOINT_ARTIFACT)
        return
    try:
        _upload_from_node(node_id, tracking_uri=tracking_uri, run_id=run_id, directory=checkpoint.path)
    except Exception as error:  # noqa: BLE001  (the node is gone, or its disk with it)
        if Path(checkpoint.path).is_dir():  # shared storage: the driver reads it as well
            client.log_artifacts(run_id, checkpoint.path, CHECKPOINT_ARTIFACT)
            return
        logger.warning("hpsearch: the checkpoint of MLflow run %s was not uploaded: node %s, which holds it "
                       "at %s, cannot run the upload (%s)", run_id, node_id[:12], checkpoint.path,
                       first_line(error))


def _driver_node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


UPLOAD_TIMEOUT_S = 600.0  # a checkpoint upload from another node; a node that dies mid-way fails sooner


def _upload_from_node(node_id: str, *, tracking_uri: str, run_id: str, directory: str) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # No CPU: an upload waits on the network, and must not wait for a trial slot on a busy node.
    task = ray.remote(num_cpus=0, max_retries=0)(_upload_checkpoint).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False), name="hpsearch-checkpoint-upload")
    # The tracking server's login goes as an argument: in a runtime_env, Ray would log it on every node.
    login = {name: os.environ[name] for name in CREDENTIAL_VARIABLES if name in os.environ}
    ray.get(task.remote(tracking_uri, run_id, directory, login), timeout=UPLOAD_TIMEOUT_S)


def _upload_checkpoint(tracking_uri: str, run_id: str, directory: str, login: Mapping[str, str]) -> None:
    """Runs on the node that holds `directory`, with the driver's MLflow login for the upload only."""
    saved = {name: os.environ.get(name) for name in login}
    os.environ.update(login)
    try:
        client_for(tracking_uri).log_artifacts(run_id, directory, CHECKPOINT_ARTIFACT)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_LOGGED_METRICS = frozenset({*EPOCH_METRICS, "epoch", "best_epoch", *(f"best_{name}" for name in EPOCH_METRICS)})


def _trial_name(trial_id: str) -> str:
    return f"trial_{trial_id.rsplit('_', 1)[-1]}"


def _param_value(value: Any) -> str:
    return str(value)[:6000]
