"""Search efficiency: Optuna TPE with ASHA against random search without early stopping.

On the real MNIST mini split (../shared/data: 7,200 training and 800 validation images), both
searches get the same space (learning rate per optimizer, batch size, optimizer, sgd momentum, the
width of a small CNN, dropout, weight decay), the same number of trials and the same epochs per
trial. For each seed s:
  1. random search, search.seed=s, no scheduler: every trial runs every epoch;
  2. Optuna TPE, search.seed=s, ASHA (grace period 1 epoch, reduction factor 3, max_t = epochs).
The target is random search's best val_accuracy minus 0.002. TPE+ASHA's reported trial-epochs
are put in the order they finished and walked; `epochs_to_target` is how many had been consumed
when its best-so-far val_accuracy first reached the target. A seed that never reaches it counts
its whole budget and is flagged. ratio_s = epochs_to_target / the trial-epochs random search
consumed (num_samples x epochs); `ratio` is the median over seeds, lower is better.

Order of trial-epochs: MLflow's metric timestamps are Tune's, in whole seconds, and epochs here
take under a second, so ties within a second are broken by the trial run's start time plus its
cumulative `epoch_seconds`.

Usage: python benchmarks/efficiency.py [--mnist-root ../shared/data] [--seeds 5] [--num-samples 20]
                                       [--epochs 5]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the best checkpoint's download
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"

REPO = Path(__file__).resolve().parents[1]
TARGET_MARGIN = 0.002  # val_accuracy below random search's best that counts as reaching it

SPACE = {
    "batch_size": {"choice": [32, 64, 128, 256]},
    "weight_decay": {"loguniform": [1e-6, 1e-2]},
    "dropout": {"uniform": [0.0, 0.5]},
    "channels": {"int": [4, 16], "step": 4},  # filters of the first conv block; the second has twice as many
    "optimizer": {"choice": {
        "adam": {"lr": {"loguniform": [1e-4, 3e-2]}},
        "sgd": {"lr": {"loguniform": [1e-3, 0.3]}, "momentum": {"uniform": [0.0, 0.95]}},
    }},
}
# Two conv blocks flattened into the classifier: 0.4-0.9 s per epoch on 7,200 images at one thread.
FIXED_TRAIN = {"model": "cnn", "depth": 2, "global_pool": False}


@dataclass(frozen=True)
class SearchResult:
    best: float  # best val_accuracy of any trial-epoch
    curve: list[float]  # val_accuracy of every trial-epoch, in the order they finished
    seconds: float  # run_search's wall time


def build_spec(*, algorithm: str, seed: int, args: argparse.Namespace, tracking_uri: str):
    from hpsearch.search_spaces.spec import validate_spec

    asha = algorithm == "optuna"
    return validate_spec({
        "name": f"efficiency-{'tpe-asha' if asha else 'random'}-seed{seed}",
        "dataset": {"name": "mnist", "root": args.mnist_root, "val_fraction": 0.1},
        "search": {"algorithm": algorithm, "metric": "val_accuracy", "mode": "max", "seed": seed,
                   "num_samples": args.num_samples, "max_concurrent": 2,
                   "scheduler": ({"name": "asha", "grace_period": 1, "reduction_factor": 3} if asha
                                 else {"name": "none"})},
        "resources": {"cpus": 1},
        "train": {**FIXED_TRAIN, "epochs": args.epochs, "seed": seed},
        "tracking": {"uri": tracking_uri, "experiment": "efficiency"},
        "space": SPACE,
    })


def run_one(spec, storage: Path) -> SearchResult:
    from hpsearch.platform.search import run_search

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the live view and summary are not shown
        outcome = run_search(spec, storage=storage)
    seconds = time.perf_counter() - started
    if outcome.best is None:
        raise RuntimeError(f"search {outcome.search_id} produced no result (status {outcome.status})")
    curve = finished_order(outcome.parent_run_id, outcome.tracking_uri)
    return SearchResult(best=max(curve), curve=curve, seconds=seconds)


def finished_order(parent_run_id: str, tracking_uri: str) -> list[float]:
    """val_accuracy of every trial-epoch of a search, ordered by when the epoch finished."""
    from mlflow.tracking import MlflowClient

    from hpsearch.platform import query

    client = MlflowClient(tracking_uri)
    points: list[tuple[int, float, float]] = []  # (Tune timestamp in s, estimated finish in s, val_accuracy)
    for run_id in query.trials(parent_run_id, tracking_uri)["run_id"]:
        run_start = client.get_run(run_id).info.start_time / 1000
        epoch_seconds = {p.step: p.value for p in client.get_metric_history(run_id, "epoch_seconds")}
        elapsed = 0.0
        for point in sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda p: p.step):
            elapsed += epoch_seconds.get(point.step, 0.0)
            points.append((point.timestamp // 1000, run_start + elapsed, point.value))
    return [value for _, _, value in sorted(points)]


def epochs_to_target(curve: list[float], target: float) -> int | None:
    """How many trial-epochs had been consumed when the best so far first reached `target`."""
    for consumed, value in enumerate(curve, start=1):
        if value >= target:
            return consumed
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, each runs both searches")
    parser.add_argument("--num-samples", type=int, default=20, help="trials per search")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial; ASHA's max_t")
    args = parser.parse_args()
    if not (Path(args.mnist_root) / "MNIST" / "raw").is_dir():
        print(f"MNIST raw files not found under {args.mnist_root}; pass --mnist-root", file=sys.stderr)
        return 2

    from hpsearch.platform.search import init_ray

    command_started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="hpsearch-efficiency-"))
    init_ray(num_cpus=2)
    ratios, random_bests, tpe_bests, reached = [], [], [], 0
    for seed in range(args.seeds):
        results: dict[str, SearchResult] = {}
        for algorithm in ("random", "optuna"):
            key = f"{algorithm}-{seed}"
            spec = build_spec(algorithm=algorithm, seed=seed, args=args,
                              tracking_uri=f"sqlite:///{work / (key + '.db')}")
            results[algorithm] = run_one(spec, work / key)
            print(f"  seed {seed} {'random' if algorithm == 'random' else 'tpe+asha'}: best "
                  f"{results[algorithm].best:.4f}, {len(results[algorithm].curve)} trial-epochs, "
                  f"{results[algorithm].seconds:.0f}s", file=sys.stderr, flush=True)
        random, tpe = results["random"], results["optuna"]
        target = random.best - TARGET_MARGIN
        consumed = epochs_to_target(tpe.curve, target)
        reached += consumed is not None
        ratio = (consumed if consumed is not None else len(tpe.curve)) / len(random.curve)
        ratios.append(ratio)
        random_bests.append(random.best)
        tpe_bests.append(tpe.best)
        print(f"seed {seed}: random best {random.best:.4f} ({len(random.curve)} epochs, {random.seconds:.0f}s), "
              f"tpe+asha best {tpe.best:.4f} ({len(tpe.curve)} epochs, {tpe.seconds:.0f}s), target {target:.4f}, "
              f"tpe epochs_to_target {consumed if consumed is not None else len(tpe.curve)}"
              f"{'' if consumed is not None else ' (NOT REACHED: whole budget)'} -> ratio {ratio:.3f}", flush=True)
    minutes = (time.perf_counter() - command_started) / 60
    print(f"ratio={statistics.median(ratios):.3f} random_best_median={statistics.median(random_bests):.4f} "
          f"tpe_asha_best_median={statistics.median(tpe_bests):.4f} seeds={args.seeds} reached={reached} "
          f"num_samples={args.num_samples} epochs={args.epochs} minutes={minutes:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
