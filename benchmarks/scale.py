"""How a search's cost grows with its size: searches of 16, 64 and 256 one-epoch trials, by hpsearch
and by the peer (the Ray Tune script a user would write instead, benchmarks/peers/tune_peer.py).

Trials: a CNN of 8 channels and one conv block on scikit-learn digits, one epoch, batch 64, Adam,
each trial its own lr (a grid of N values, geometric from 3e-4 to 3e-2): the same N trials for
hpsearch, the peer and the plain loop. Ray gets 8 logical CPUs on this machine's 2 cores and runs 8
trials at a time at 1 CPU each: a trial this short is mostly per-trial latency (an actor handed to
the next trial, tracking writes), which more trials at once can hide behind other trials' training.

Each search runs in a process of its own, a child of this one started with this command's
environment, in a fresh Ray session: its driver's peak memory is that search's alone, and the peer
runs without what hpsearch sets and patches in the process it searches in. For each size N and tool:
  search_s      the search's wall time in its process: hpsearch's `run_search` (tracking, checkpoints,
                the best trial's test evaluation and summary included), the peer's data load and
                `Tuner.fit`; Ray's start and the process's imports excluded
  ideal_s       the plain loop's time for the same N trials, one after another at one thread in this
                process with no Ray running, / 2 (the cores: no schedule of these trainings is faster)
  excess_s      search_s - ideal_s
  driver_mb     the search process's peak resident memory (`getrusage` ru_maxrss as the search ends):
                imports, Ray's driver and the search; hpsearch's driver is the process it searches in
marginal_s_per_trial (peer_marginal_s_per_trial for the peer): the least-squares slope of excess_s
against N over the sizes, what each further trial costs beyond its training; a fixed cost (Ray's
workers starting, a store's schema, a test evaluation) falls in the intercept.
driver_rss_256_over_16: hpsearch's driver_mb at the largest size over that at the smallest (the
name carries the sizes).
tracking_lag_p95_s: at the largest size, hpsearch's trials, the 95th percentile over epochs of the
time from the result's arrival at hpsearch's tracker (`TrialTracker.on_trial_result`, wrapped in
the child to note the time and pass the result on) to its val_accuracy being readable in the store:
a thread reads the SQLite file every 0.1 s (one query, read-only) and notes when each (trial,
epoch) first appears. tracking_lag_upper_p95_s counts from the metric's own timestamp instead,
which the trial takes as it reports but in whole seconds (Ray's `timestamp`): it includes Ray's
delivery of the result to the driver and overstates the lag by up to 1 s.
Targets: marginal_s_per_trial <= peer_marginal_s_per_trial, driver_rss_256_over_16 <= 2,
tracking_lag_p95_s <= 2.

Usage: python benchmarks/scale.py [--sizes 16,64,256]      (a quick try: --sizes 4,8)
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Before anything imports hpsearch.platform, which sets Tune's variables in the environment.
from overhead import COMMAND_ENV, OneLineParser, peer_run, plain_loop

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the best checkpoint's download

REPO = Path(__file__).resolve().parents[1]
CPUS = 8  # Ray's logical CPUs, on 2 cores
MAX_CONCURRENT = 8  # trials at a time, 1 CPU each
CORES = 2  # the ideal: the plain loop's time / CORES
LAG_METRIC = "val_accuracy"
POLL_S = 0.1
TARGETS = {"driver_rss": 2.0, "tracking_lag_p95_s": 2.0}


def raw_spec(size: int) -> dict:
    lrs = [float(f"{3e-4 * 100 ** (index / max(size - 1, 1)):.6g}") for index in range(size)]
    return {
        "name": f"scale-{size}",
        "dataset": {"name": "digits"},
        "train": {"model": "cnn", "channels": 8, "depth": 1, "optimizer": "adam", "batch_size": 64, "epochs": 1},
        "space": {"lr": {"grid": lrs}},
        "search": {"algorithm": "grid", "num_samples": 1, "max_concurrent": MAX_CONCURRENT},
        "resources": {"cpus": 1},
        "tracking": {"experiment": f"scale-{size}"},
    }


# ------------------------------------------------------------------------------------------------ hpsearch's child

class StorePoller:
    """Notes when each trial's (trial id, epoch) metric first is readable in a SQLite tracking store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first_seen: dict[tuple[str, int], tuple[float, float]] = {}  # -> (seen at, metric timestamp)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-poller", daemon=True)

    def __enter__(self) -> "StorePoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        from hpsearch.platform.tracking.tags import TRIAL_ID

        while not self.path.exists() and not self._stop.wait(POLL_S):
            pass
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        query = ("SELECT tags.value, metrics.step, metrics.timestamp FROM metrics JOIN tags "
                 "ON tags.run_uuid = metrics.run_uuid AND tags.key = ? WHERE metrics.key = ?")
        try:
            while True:
                stopping = self._stop.is_set()  # one more read after the search's end
                try:
                    rows = connection.execute(query, (TRIAL_ID, LAG_METRIC)).fetchall()
                except sqlite3.OperationalError:  # the schema not there yet
                    rows = []
                now = time.time()
                for trial_id, step, timestamp in rows:
                    self.first_seen.setdefault((trial_id, int(step)), (now, timestamp / 1000))
                if stopping:
                    return
                self._stop.wait(POLL_S)
        finally:
            connection.close()


def note_arrivals(arrived: dict[tuple[str, int], float]) -> None:
    """Wrap TrialTracker.on_trial_result: note when each result reaches hpsearch's tracking, pass it on."""
    from hpsearch.platform.tracking.writer import TrialTracker

    on_trial_result = TrialTracker.on_trial_result

    def noted(self, iteration, trials, trial, result, **info) -> None:
        arrived.setdefault((trial.trial_id, int(result.get("epoch", 0))), time.time())
        on_trial_result(self, iteration, trials, trial, result, **info)

    TrialTracker.on_trial_result = noted


def hpsearch_child(spec_file: Path, work: Path) -> int:
    """One hpsearch search in this process; prints its figures as JSON, last line."""
    import ray

    from hpsearch.platform.search import init_ray, run_search
    from hpsearch.search_spaces.spec import validate_spec

    store = work / "hpsearch.db"
    spec = validate_spec({**json.loads(spec_file.read_text()), "tracking": {
        "uri": f"sqlite:///{store}", "experiment": spec_file.stem}})
    started = time.perf_counter()
    init_ray(num_cpus=CPUS)
    ray_init_s = time.perf_counter() - started
    arrived: dict[tuple[str, int], float] = {}
    note_arrivals(arrived)
    with StorePoller(store) as poller:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the live view still runs; its text is not shown
            outcome = run_search(spec, storage=work / "ray")
        seconds = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    ray.shutdown()
    lags = [seen - arrived[key] for key, (seen, _) in poller.first_seen.items() if key in arrived]
    upper = [seen - timestamp for seen, timestamp in poller.first_seen.values()]
    print(json.dumps({"seconds": seconds, "ray_init_s": ray_init_s, "driver_peak_rss_mb": peak_rss_mb,
                      "status": outcome.status, "counts": outcome.counts, "reports": len(arrived),
                      "lags": lags, "upper_lags": upper}))
    return 0


def hpsearch_run(spec: dict, work: Path) -> dict:
    """hpsearch_child in a process of its own; its figures."""
    work.mkdir(parents=True)
    spec_file = work / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, __file__, "--child", str(spec_file), "--work", str(work)],
                          env=COMMAND_ENV, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the hpsearch search failed (exit status {done.returncode}):\n{done.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    if figures["status"] != "completed" or figures["counts"]["completed"] != len(spec["space"]["lr"]["grid"]):
        raise RuntimeError(f"the hpsearch search ended {figures['status']} with {figures['counts']}")
    return figures


# ------------------------------------------------------------------------------------------------ measures

def slope(sizes: list[int], values: list[float]) -> float:
    """The least-squares slope of values against sizes."""
    mean_size, mean_value = sum(sizes) / len(sizes), sum(values) / len(values)
    spread = sum((size - mean_size) ** 2 for size in sizes)
    return sum((size - mean_size) * (value - mean_value) for size, value in zip(sizes, values)) / spread


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# ------------------------------------------------------------------------------------------------ main

def size_list(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if len(sizes) < 2 or len(set(sizes)) != len(sizes) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least two different sizes, each at least 1")
    return sorted(sizes)


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=size_list, default=[16, 64, 256], help="trials per search, e.g. 16,64,256")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a spec file: hpsearch_child
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return hpsearch_child(args.child, args.work)

    from hpsearch.search_spaces.spec import validate_spec

    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-scale-") as folder:
        work = Path(folder)
        print(f"{'trials':>6} {'ideal_s':>8} | {'hpsearch_s':>10} {'excess_s':>8} {'driver_mb':>9} | {'peer_s':>7} "
              f"{'excess_s':>8} {'driver_mb':>9}", flush=True)
        for size in args.sizes:
            spec = raw_spec(size)
            hpsearch = hpsearch_run(spec, work / spec["name"] / "hpsearch")
            peer = peer_run(spec, work=work / spec["name"] / "peer", num_cpus=CPUS,
                            tracking_uri=f"sqlite:///{work / spec['name'] / 'peer' / 'peer.db'}")
            ideal = plain_loop(validate_spec(spec)) / CORES
            rows.append((size, ideal, hpsearch, peer))
            print(f"{size:>6} {ideal:>8.2f} | {hpsearch['seconds']:>10.2f} {hpsearch['seconds'] - ideal:>8.2f} "
                  f"{hpsearch['driver_peak_rss_mb']:>9.0f} | {peer['seconds']:>7.2f} {peer['seconds'] - ideal:>8.2f} "
                  f"{peer['driver_peak_rss_mb']:>9.0f}", flush=True)
    sizes = [size for size, *_ in rows]
    marginal = slope(sizes, [hpsearch["seconds"] - ideal for _, ideal, hpsearch, _ in rows])
    peer_marginal = slope(sizes, [peer["seconds"] - ideal for _, ideal, _, peer in rows])
    rss_ratio = rows[-1][2]["driver_peak_rss_mb"] / rows[0][2]["driver_peak_rss_mb"]
    largest = rows[-1][2]
    lag, upper = percentile(largest["lags"], 0.95), percentile(largest["upper_lags"], 0.95)
    rss_key = f"driver_rss_{sizes[-1]}_over_{sizes[0]}"
    print(f"at {sizes[-1]} trials: {len(largest['lags'])} of {largest['reports']} reports timed in the store, "
          f"lag median {percentile(largest['lags'], 0.5):.2f}s, p95 {lag:.2f}s, "
          f"max {percentile(largest['lags'], 1):.2f}s"
          f" (from the trial's whole-second timestamp: p95 {upper:.2f}s)")
    print(f"targets: marginal_s_per_trial {marginal:.3f} <= peer's {peer_marginal:.3f} "
          f"{'met' if marginal <= peer_marginal else 'NOT met'}, {rss_key} {rss_ratio:.2f} <= {TARGETS['driver_rss']} "
          f"{'met' if rss_ratio <= TARGETS['driver_rss'] else 'NOT met'}, tracking_lag_p95_s {lag:.2f} <= "
          f"{TARGETS['tracking_lag_p95_s']} {'met' if lag <= TARGETS['tracking_lag_p95_s'] else 'NOT met'}")
    rss = " ".join(f"driver_mb_{size}={hpsearch['driver_peak_rss_mb']:.0f}" for size, _, hpsearch, _ in rows)
    peer_rss = " ".join(f"peer_driver_mb_{size}={peer['driver_peak_rss_mb']:.0f}" for size, *_, peer in rows)
    print(f"marginal_s_per_trial={marginal:.3f} peer_marginal_s_per_trial={peer_marginal:.3f} "
          f"{rss_key}={rss_ratio:.2f} "
          f"tracking_lag_p95_s={lag:.2f} tracking_lag_upper_p95_s={upper:.2f} {rss} {peer_rss} "
          f"ray_init_s={max(hpsearch['ray_init_s'] for _, _, hpsearch, _ in rows):.2f} "
          f"sizes={','.join(map(str, sizes))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
