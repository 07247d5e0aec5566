"""Dashboard at scale: a 10,000-trial search in a SQLite store, read by the dashboard's callbacks.

The store holds what a finished hpsearch search leaves in MLflow: a parent run made by
`tracking.start_search_run`, one child run per trial with the tags, params and per-epoch metrics
(step = epoch) that `TrialTracker` writes, the snapshot `tracking.write_final_snapshot` puts on the
parent run (`index/trials.parquet`), and `tracking.finish_search_run`'s totals. Trials are
simulated, not trained: a random search over lr, batch size, optimizer (sgd adds momentum), weight
decay, dropout and model (cnn adds channels), noisy learning curves seeded with `--seed`; 30%
stopped early by ASHA after 1-4 epochs, about 1% diverged, 2% failed. Each trial is one
`create_run`, one `log_batch` and one `set_terminated`. The store is built once (about 7 minutes
for 10,000 trials on 2 cores) and cached under benchmarks/.cache/; `--fresh` rebuilds it.

Then, in this one process, against the same store:
  search_runs_s        `mlflow.search_runs` over the experiment: what a user would do by hand
  first_view_s         a new RunSource, `callbacks.search_view(known_version=0)`, and the whole
                       response serialized as Dash sends it (`plotly.io.json.to_json_plotly`);
                       `first_view_mb` is its size
  first_view_noindex_s the same data path without the snapshot: every trial run read in full
  curves50_s           `callbacks.curves_view` for 50 seeded trials on a loaded search, to JSON
  refresh_s            one live refresh of a loaded search when nothing changed; `refresh_rows` is
                       how many trials it sent as changed all the same (0 is right)
  importance_s         `callbacks.importance_view` (PED-ANOVA, Optuna 5's default, on up to 2,000 trials), to JSON
  searches_page_s      `callbacks.searches_rows` with a fresh RunSource, on a second store of `--searches`
                       small ended searches (1,000; two trial runs each, written as the tracker writes
                       them, cached too), to JSON
Each timing is the median of `--repeats` runs, each with a fresh RunSource so nothing is cached
between runs; first_view_noindex_s and importance_s run once. `max_trace_points` is the largest
trace of any figure the search page makes (parallel coordinates, best-so-far by trial and by time,
metric vs lr coloured by optimizer, the 50 learning curves, importance); `webgl_ok` says every
trace of more than 1,000 points is WebGL (scattergl or parcoords).

Targets: first_view_s <= 1.5, curves50_s <= 0.5, max_trace_points <= 5000, searches_page_s <= 1.5.

Usage: python benchmarks/dashboard_scale.py [--trials 10000] [--epochs 20] [--repeats 3] [--searches 1000] [--fresh]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per snapshot read otherwise
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"
logging.getLogger("alembic").setLevel(logging.WARNING)  # a line per schema migration of a new store

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache"
EXPERIMENT = "dashboard-scale"
METRIC = "val_accuracy"
TARGETS = {"first_view_s": 1.5, "curves50_s": 0.5, "max_trace_points": 5000, "searches_page_s": 1.5}
WEBGL_ABOVE = 1000  # points in a trace beyond which it must be drawn with WebGL
CURVE_TRIALS = 50
VAL_IMAGES = 800  # validation split size: accuracies are multiples of 1/800, with ties as in real searches
TRAIN_IMAGES = 7200

SPEC = {
    "name": "scale",
    "description": "simulated random search for benchmarks/dashboard_scale.py",
    "dataset": {"name": "digits"},
    "search": {"algorithm": "random", "metric": METRIC, "mode": "max", "max_concurrent": 8,
               "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}},
    "space": {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "batch_size": {"choice": [32, 64, 128, 256]},
        "weight_decay": {"loguniform": [1e-6, 1e-2]},
        "dropout": {"uniform": [0.0, 0.5]},
        "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.5, 0.99]}}}},
        "model": {"choice": {"cnn": {"channels": {"int": [8, 64], "step": 8}}, "mlp": {}}},
    },
}
NODES = [f"worker-{n} (10.0.0.{10 + n}, node {format(0x3a5f00c0ffee + n, '012x')})" for n in range(4)]
ERRORS = ["RuntimeError: DataLoader worker (pid 41234) is killed by signal: Killed.",
          "ray.exceptions.RayActorError: The actor died unexpectedly before finishing this task."]


# --------------------------------------------------------------------------- the simulated search

@dataclass(frozen=True)
class SimulatedTrial:
    params: dict[str, Any]
    status: str  # completed, stopped_early, diverged or failed
    epochs: list[dict[str, float]]  # the metrics hpsearch logs for each epoch reported
    error: str | None = None


def sample_params(rng: random.Random) -> dict[str, Any]:
    """One configuration, flattened as `flatten_config` writes it: a branch's value, then its parameters."""
    params: dict[str, Any] = {
        "lr": 10 ** rng.uniform(-4, -1),
        "batch_size": rng.choice([32, 64, 128, 256]),
        "weight_decay": 10 ** rng.uniform(-6, -2),
        "dropout": rng.uniform(0.0, 0.5),
        "optimizer": rng.choice(["adam", "sgd"]),
    }
    if params["optimizer"] == "sgd":
        params["momentum"] = rng.uniform(0.5, 0.99)
    params["model"] = rng.choice(["cnn", "mlp"])
    if params["model"] == "cnn":
        params["channels"] = rng.randrange(8, 65, 8)
    return params


def final_accuracy(params: dict[str, Any], rng: random.Random) -> tuple[float, float]:
    """(accuracy the curve tends to, epochs it takes to get most of the way): a plausible landscape."""
    best_lr = 3e-3 if params["optimizer"] == "adam" else 5e-2
    distance = abs(math.log10(params["lr"] / best_lr))  # decades from the best learning rate
    accuracy = (0.985 - 0.07 * distance ** 2 - (0.025 if params["model"] == "mlp" else 0.0)
                - 0.04 * max(0.0, math.log10(params["weight_decay"]) + 3) - 0.08 * max(0.0, params["dropout"] - 0.3)
                + 0.0002 * (params.get("channels", 32) - 32) + rng.gauss(0, 0.006))
    return min(max(accuracy, 0.1), 0.995), 1.0 + 2.5 * distance + params["batch_size"] / 128


def simulate_trial(rng: random.Random, *, epochs: int) -> SimulatedTrial:
    params = sample_params(rng)
    ceiling, tau = final_accuracy(params, rng)
    draw = rng.random()
    status, error, ran, diverge_at = "completed", None, epochs, None
    if draw < 0.02:  # failed: half before the first report
        status, error, ran = "failed", rng.choice(ERRORS), rng.choice([0, 0, 1, 2, 3])
    elif draw < 0.03:  # a loss that became NaN: hpsearch stops the trial at that epoch
        status, diverge_at = "diverged", rng.randint(1, min(5, epochs))
        ran = diverge_at
    elif draw < 0.33:  # ASHA stopped it at an early rung
        status, ran = "stopped_early", rng.randint(1, min(4, epochs - 1)) if epochs > 1 else 1
    seconds = (1.4 + rng.gauss(0, 0.05)) * (64 / params["batch_size"]) ** 0.3 * (1.5 if params["model"] == "cnn"
                                                                                  else 0.6)
    reports, best, best_epoch = [], -1.0, 0
    for epoch in range(1, ran + 1):
        settle = math.exp(-epoch / tau)
        accuracy = ceiling - (ceiling - 0.1) * settle + rng.gauss(0, 0.004 + 0.02 * settle)
        accuracy = round(min(max(accuracy, 0.0), 1.0) * VAL_IMAGES) / VAL_IMAGES
        val_loss = -1.2 * math.log(max(accuracy, 1e-3)) + 0.004 * epoch + abs(rng.gauss(0, 0.01))
        train_loss = val_loss * 0.85 - 0.003 * epoch
        if epoch == diverge_at:
            accuracy, val_loss, train_loss = 0.1, float("nan"), float("nan")
        if accuracy > best:
            best, best_epoch = accuracy, epoch
        epoch_seconds = seconds * (1 + abs(rng.gauss(0, 0.03)))
        reports.append({
            "train_loss": train_loss,
            "train_accuracy": min(1.0, accuracy + 0.002 * epoch + abs(rng.gauss(0, 0.003))),
            "val_loss": val_loss, "val_accuracy": accuracy,
            "val_accuracy_top5": min(1.0, accuracy + (1 - accuracy) * 0.85),
            "lr": params["lr"], "epoch_seconds": epoch_seconds, "images_per_second": TRAIN_IMAGES / epoch_seconds,
            "epoch": epoch, f"best_{METRIC}": best, "best_epoch": best_epoch,
        })
    return SimulatedTrial(params, status, reports, error)


# --------------------------------------------------------------------------- the store

@dataclass(frozen=True)
class Store:
    uri: str
    experiment_id: str
    parent_run_id: str
    search_id: str
    build_s: float
    snapshot_write_s: float
    cached: bool


def store_paths(trials: int) -> tuple[Path, Path, Path]:
    """The SQLite file, its artifact folder, and the record of how long building it took."""
    return (CACHE / f"dashboard_scale_{trials}.db", CACHE / f"dashboard_scale_{trials}_artifacts",
            CACHE / f"dashboard_scale_{trials}.json")


def cached_store(trials: int, epochs: int) -> Store | None:
    """The cached store when it is complete: the search finished, its snapshot has every trial."""
    from mlflow.tracking import MlflowClient

    from hpsearch.platform.tracking.index import INDEX_TAG, read_index

    database, _, record = store_paths(trials)
    if not (database.exists() and record.exists()):
        return None
    built = json.loads(record.read_text())
    client = MlflowClient(f"sqlite:///{database}")
    parent = client.get_run(built["parent_run_id"])
    if INDEX_TAG not in parent.data.tags or parent.data.params.get("epochs") != str(epochs):
        return None
    snapshot = read_index(client, built["parent_run_id"])
    if snapshot is None or len(snapshot[0]) != trials:
        return None
    return Store(uri=f"sqlite:///{database}", experiment_id=built["experiment_id"],
                 parent_run_id=built["parent_run_id"], search_id=built["search_id"], build_s=built["build_s"],
                 snapshot_write_s=built["snapshot_write_s"], cached=True)


def build_store(*, trials: int, epochs: int, seed: int) -> Store:
    """A finished search of `trials` simulated trials, written as hpsearch writes it."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from hpsearch.platform import tracking
    from hpsearch.search_spaces.spec import dump_spec, validate_spec
    from hpsearch.platform.tracking.tags import ERROR, NODE, PARENT, ROLE, SEARCH_ID, STATUS, TRIAL_ID

    database, artifacts, record = store_paths(trials)
    for path in (database, record):
        path.unlink(missing_ok=True)
    shutil.rmtree(artifacts, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{database}"
    spec = validate_spec({**SPEC, "search": {**SPEC["search"], "num_samples": trials, "seed": seed},
                          "train": {"epochs": epochs}, "tracking": {"uri": uri, "experiment": EXPERIMENT}})
    rng = random.Random(seed)
    search_id = f"scale-20261122-000000-{rng.getrandbits(16):04x}"
    prefix = f"{rng.getrandbits(20):05x}"  # Tune's trial ids: <experiment hash>_<number>

    started = time.perf_counter()
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts.resolve().as_uri())
    parent = tracking.start_search_run(client, experiment_id=experiment_id, spec=spec, search_id=search_id,
                                       experiment_path="-", spec_yaml=dump_spec(spec), planned_trials=trials)
    counts = dict.fromkeys(("completed", "stopped_early", "diverged", "failed"), 0)
    best_value = -1.0
    print(f"building {trials} trial runs x {epochs} epochs in {database.relative_to(REPO)}", flush=True)
    for number in range(trials):
        trial = simulate_trial(rng, epochs=epochs)
        tags = {PARENT: parent, ROLE: "trial", TRIAL_ID: f"{prefix}_{number:05d}", SEARCH_ID: search_id,
                STATUS: trial.status}
        run_id = client.create_run(experiment_id, tags=tags, run_name=f"trial_{number:05d}").info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, report["epoch"]) for report in trial.epochs
                   for name, value in report.items()]
        extra_tags = [RunTag(NODE, NODES[number % len(NODES)])] if trial.epochs else []
        if trial.error:
            extra_tags.append(RunTag(ERROR, trial.error))
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in trial.params.items()],
                         tags=extra_tags)
        client.set_terminated(run_id, "FAILED" if trial.status == "failed" else "FINISHED")
        counts[trial.status] += 1
        if trial.status in ("completed", "stopped_early") and trial.epochs:
            best_value = max(best_value, trial.epochs[-1][f"best_{METRIC}"])
        if (number + 1) % 1000 == 0 or number + 1 == trials:
            elapsed = time.perf_counter() - started
            rate = (number + 1) / elapsed
            print(f"  {number + 1}/{trials} trial runs, {rate:.0f}/s, ETA {(trials - number - 1) / rate:.0f}s",
                  flush=True)
    snapshot_started = time.perf_counter()
    tracking.write_final_snapshot(client, experiment_id=experiment_id, parent_run_id=parent)
    snapshot_write_s = time.perf_counter() - snapshot_started
    tracking.finish_search_run(client, parent, status="completed", best_value=best_value, metric=METRIC,
                               counts=counts)
    build_s = time.perf_counter() - started
    # Written last: a store without it was interrupted while building and is built again.
    record.write_text(json.dumps({"experiment_id": experiment_id, "parent_run_id": parent, "search_id": search_id,
                                  "build_s": build_s, "snapshot_write_s": snapshot_write_s, "counts": counts}))
    print(f"built in {build_s:.0f}s ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
          f"snapshot written in {snapshot_write_s:.2f}s", flush=True)
    return Store(uri, experiment_id, parent, search_id, build_s, snapshot_write_s, cached=False)


def searches_store(count: int, *, seed: int) -> str:
    """A store of `count` small ended searches (two trial runs each), written as hpsearch writes them;
    cached like the large one. Returns its URI."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from hpsearch.platform import tracking
    from hpsearch.platform.tracking.tags import PARENT, ROLE, SEARCH_ID, STATUS, TRIAL_ID
    from hpsearch.search_spaces.spec import dump_spec, validate_spec

    database, artifacts = CACHE / f"dashboard_searches_{count}.db", CACHE / f"dashboard_searches_{count}_artifacts"
    record = CACHE / f"dashboard_searches_{count}.json"
    uri = f"sqlite:///{database}"
    if record.exists() and database.exists():
        return uri
    database.unlink(missing_ok=True)
    shutil.rmtree(artifacts, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts.resolve().as_uri())
    rng = random.Random(seed)
    started = time.perf_counter()
    print(f"building {count} searches in {database.relative_to(REPO)}", flush=True)
    for number in range(count):
        spec = validate_spec({**SPEC, "name": f"scale-{number % 25}", "search": {**SPEC["search"], "num_samples": 2},
                              "tracking": {"uri": uri, "experiment": EXPERIMENT}})
        search_id = f"scale-{number % 25}-20261122-{number:06d}-{rng.getrandbits(16):04x}"
        parent = tracking.start_search_run(client, experiment_id=experiment_id, spec=spec, search_id=search_id,
                                           experiment_path="-", spec_yaml=dump_spec(spec), planned_trials=2)
        best = 0.0
        for trial in range(2):
            tags = {PARENT: parent, ROLE: "trial", TRIAL_ID: f"{number:05x}_{trial:05d}", SEARCH_ID: search_id,
                    STATUS: "completed"}
            run_id = client.create_run(experiment_id, tags=tags, run_name=f"trial_{trial:05d}").info.run_id
            value = rng.uniform(0.5, 0.99)
            best = max(best, value)
            now = int(time.time() * 1000)
            client.log_batch(run_id, params=[Param("lr", f"{rng.uniform(1e-4, 1e-1):.5g}")],
                             metrics=[Metric(name, value, now, 1) for name in (METRIC, f"best_{METRIC}")])
            client.set_terminated(run_id, "FINISHED")
        tracking.finish_search_run(client, parent, status="completed", best_value=best, metric=METRIC,
                                   counts={"completed": 2, "stopped_early": 0, "diverged": 0, "failed": 0})
    record.write_text(json.dumps({"searches": count, "build_s": time.perf_counter() - started}))
    print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    return uri


def searches_page(uri: str) -> int:
    """The searches page's first view with a fresh RunSource, as Dash sends it; returns its rows."""
    from hpsearch.dashboard import callbacks
    from hpsearch.dashboard.source import RunSource

    rows = callbacks.searches_rows(RunSource(uri))
    json.dumps(rows)
    return len(rows)


# --------------------------------------------------------------------------- timings

def median_time(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The median wall time of `repeats` calls, and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def response_json(view) -> str:
    """The search page callback's outputs, serialized as Dash serializes a response."""
    from plotly.io.json import to_json_plotly

    first_param = view.param_options[0]["value"] if view.param_options else None
    outputs = [view.header, view.best_card, view.row_data, view.row_transaction, view.column_defs,
               view.column_options, view.columns_shown, view.parcoords, view.param_options, first_param,
               view.param_options, view.metric_options, view.metric, view.selected, view.version]
    return to_json_plotly(outputs)


def first_view(store: Store) -> tuple[Any, str]:
    from hpsearch.dashboard import callbacks
    from hpsearch.dashboard.source import RunSource

    view = callbacks.search_view(RunSource(store.uri), store.search_id, known_version=0)
    return view, response_json(view)


def first_view_noindex(store: Store) -> str:
    """The first view's data path when the search has no snapshot: every trial run read in full."""
    import plotly.io
    from mlflow.tracking import MlflowClient
    from plotly.io.json import to_json_plotly

    from hpsearch.dashboard import callbacks, figures
    from hpsearch.dashboard.data import hashable_params
    from hpsearch.platform import query
    from hpsearch.platform.tracking.index import TrialRuns

    runs = TrialRuns(store.experiment_id, store.parent_run_id)
    runs.refresh(MlflowClient(store.uri))
    trials = hashable_params(query.trials_frame(runs.frame, metric=METRIC))
    rows = callbacks.grid_rows(trials)
    figure = figures.parallel_coordinates(trials, metric=METRIC, mode="max")
    return to_json_plotly(rows) + plotly.io.to_json(figure)


def loaded_source(store: Store):
    from hpsearch.dashboard.source import RunSource

    source = RunSource(store.uri)
    source.search(store.search_id)
    return source


def timed_curves(store: Store, chosen: list[str]) -> tuple[float, Any]:
    import plotly.io

    from hpsearch.dashboard import callbacks

    source = loaded_source(store)  # not timed: the page has loaded the search before a selection
    started = time.perf_counter()
    figure = callbacks.curves_view(source, store.search_id, chosen, METRIC)
    plotly.io.to_json(figure)
    return time.perf_counter() - started, figure


def refresh(source, search_id: str) -> tuple[float, int]:
    """One tick of the page on a search that did not change: its time, and the rows it sent anyway."""
    from hpsearch.dashboard import callbacks

    data = source._searches[search_id]
    data.fetched_at = 0.0  # as if the page's tick came after max_age_s
    started = time.perf_counter()
    view = callbacks.search_view(source, search_id, known_version=data.version)
    if view.header is not None:  # the source saw a change: the page gets it, and every view keyed on the version
        response_json(view)
    seconds = time.perf_counter() - started
    sent = view.row_transaction or {}
    return seconds, len(sent.get("add", [])) + len(sent.get("update", []))


def trace_points(trace) -> int:
    if trace.type == "parcoords":
        return len(trace.dimensions[0]["values"]) if trace.dimensions else 0
    values = trace.x if trace.x is not None else trace.y
    return 0 if values is None else len(values)


def check_figures(figures: dict[str, Any]) -> tuple[int, bool, list[str]]:
    """The largest trace of any figure, whether every large trace is WebGL, and a line per figure."""
    largest, webgl_ok, lines = 0, True, []
    for name, figure in figures.items():
        sizes = [(trace.type, trace_points(trace)) for trace in figure.data]
        for kind, points in sizes:
            largest = max(largest, points)
            if points > WEBGL_ABOVE and kind not in ("scattergl", "parcoords"):
                webgl_ok = False
        kinds = sorted({kind for kind, _ in sizes})
        lines.append(f"  {name}: {len(sizes)} {'/'.join(kinds) or 'no'} traces, largest "
                     f"{max((points for _, points in sizes), default=0)} points")
    return largest, webgl_ok, lines


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached store")
    parser.add_argument("--searches", type=int, default=1000, help="searches in the store of many small searches")
    args = parser.parse_args()
    if args.trials < CURVE_TRIALS or args.epochs < 1:
        print(f"--trials must be at least {CURVE_TRIALS} and --epochs at least 1", file=sys.stderr)
        return 2

    import mlflow
    import plotly.io

    from hpsearch.dashboard import callbacks
    from hpsearch.dashboard.source import RunSource

    store = None if args.fresh else cached_store(args.trials, args.epochs)
    if store is None:
        store = build_store(trials=args.trials, epochs=args.epochs, seed=args.seed)
    else:
        print(f"using the cached store {store_paths(args.trials)[0].relative_to(REPO)} "
              f"(built in {store.build_s:.0f}s; --fresh rebuilds it)", flush=True)
    results: dict[str, Any] = {"trials": args.trials}

    mlflow.set_tracking_uri(store.uri)
    results["search_runs_s"], runs = median_time(
        args.repeats, lambda: mlflow.search_runs(experiment_ids=[store.experiment_id], max_results=100000))
    print(f"mlflow.search_runs: {results['search_runs_s']:.2f}s for {len(runs)} runs", flush=True)

    results["first_view_s"], (view, payload) = median_time(args.repeats, lambda: first_view(store))
    results["first_view_mb"] = len(payload.encode()) / 1e6
    callback_s, _ = median_time(args.repeats, lambda: callbacks.search_view(
        RunSource(store.uri), store.search_id, known_version=0))
    print(f"first view: {results['first_view_s']:.2f}s ({callback_s:.2f}s in search_view, the rest serializing "
          f"{results['first_view_mb']:.1f} MB)", flush=True)

    started = time.perf_counter()
    first_view_noindex(store)
    results["first_view_noindex_s"] = time.perf_counter() - started
    print(f"first view without the snapshot: {results['first_view_noindex_s']:.2f}s", flush=True)

    source = loaded_source(store)
    trial_names = sorted(source.search(store.search_id).trials["trial"])
    chosen = random.Random(args.seed).sample(trial_names, CURVE_TRIALS)
    timed = [timed_curves(store, chosen) for _ in range(args.repeats)]
    results["curves50_s"] = statistics.median(seconds for seconds, _ in timed)
    curve_figure = timed[-1][1]
    print(f"learning curves of {CURVE_TRIALS} trials: {results['curves50_s']:.3f}s", flush=True)

    ticks = [refresh(source, store.search_id) for _ in range(args.repeats)]
    results["refresh_s"] = statistics.median(seconds for seconds, _ in ticks)
    results["refresh_rows"] = ticks[-1][1]
    print(f"live refresh, nothing changed: {results['refresh_s']:.3f}s, {results['refresh_rows']} rows sent as "
          f"changed (0 expected)", flush=True)

    started = time.perf_counter()
    importance = callbacks.importance_view(source, store.search_id)
    plotly.io.to_json(importance)
    results["importance_s"] = time.perf_counter() - started
    print(f"importance: {results['importance_s']:.2f}s", flush=True)

    figures = {
        "parallel coordinates": view.parcoords,
        "best so far by trial": callbacks.best_so_far_view(source, store.search_id, "trial"),
        "best so far by time": callbacks.best_so_far_view(source, store.search_id, "time"),
        "best val_accuracy vs lr by optimizer": callbacks.metric_vs_param_view(source, store.search_id, "lr",
                                                                                "optimizer"),
        f"learning curves of {CURVE_TRIALS}": curve_figure,
        "importance": importance,
    }
    results["max_trace_points"], webgl_ok, lines = check_figures(figures)
    print("points per trace:", *lines, sep="\n")

    many = searches_store(args.searches, seed=args.seed)
    results["searches_page_s"], shown = median_time(args.repeats, lambda: searches_page(many))
    print(f"searches page of {args.searches} searches: {results['searches_page_s']:.2f}s ({shown} rows)", flush=True)

    met = {name: results[name] <= limit for name, limit in TARGETS.items()}
    print("targets: " + ", ".join(f"{name} {round(results[name], 3)} <= {limit} {'ok' if met[name] else 'MISSED'}"
                                  for name, limit in TARGETS.items()) + f"; webgl {'ok' if webgl_ok else 'MISSED'}")
    last = {
        "trials": args.trials, "epochs": args.epochs, "first_view_s": f"{results['first_view_s']:.3f}",
        "curves50_s": f"{results['curves50_s']:.3f}", "search_runs_s": f"{results['search_runs_s']:.3f}",
        "first_view_noindex_s": f"{results['first_view_noindex_s']:.3f}",
        "importance_s": f"{results['importance_s']:.3f}", "refresh_s": f"{results['refresh_s']:.3f}",
        "refresh_rows": results["refresh_rows"], "max_trace_points": results["max_trace_points"],
        "webgl_ok": str(webgl_ok).lower(), "first_view_mb": f"{results['first_view_mb']:.2f}",
        "store_build_s": f"{store.build_s:.1f}", "snapshot_write_s": f"{store.snapshot_write_s:.3f}",
        "store_cached": str(store.cached).lower(), "searches": args.searches,
        "searches_page_s": f"{results['searches_page_s']:.3f}",
    }
    print(" ".join(f"{key}={value}" for key, value in last.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
