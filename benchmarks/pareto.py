"""Accuracy against cost: multi-objective Optuna TPE against random search, by hypervolume.

On the real MNIST mini split (../shared/data: 6,400 training and 1,600 validation images), both
searches get the same space, the same objectives, the same constraint, the same trial budget and
the same epochs per trial (no scheduler: every feasible trial trains every epoch):

  objectives:  val_accuracy (max) against macs (min); macs is counted from the model, so it is the
               same on every run, unlike a measured latency
  constraint:  params <= 60000, checked before the first epoch: a trial that breaks it ends at once,
               `infeasible`, without training (about 40% of uniform samples of this space do)
  space:       model: mlp (hidden_sizes [16], [32], [64] or [128]) or cnn (channels 4..48 step 4,
               depth 1..3, batch norm, flattened into the classifier); lr: loguniform 0.0001..0.1;
               optimizer: adam, or sgd with momentum uniform 0..0.95; batch_size 32, 64, 128 or 256;
               weight_decay: loguniform 1e-6..1e-2; dropout: uniform 0..0.5. CNNs that learn within 2
               epochs (batch norm, no global pooling) beat the MLPs, at a cost that grows with their
               width and depth: a real trade-off, and the settings a user searches with it, among
               which a searcher must learn to avoid the ends of the lr range and slow combinations

For each seed s in 0..N-1, a random search and an Optuna search (multi-objective TPE told each
trial's violation through Optuna's constraint API), both with search.seed = s, run in this process
one after the other on one local Ray session (2 CPUs, 2 trials at a time, 1 CPU each), each
tracking to its own fresh SQLite store in a temporary folder. Afterwards every search's trials are
read back with `hpsearch.query.trials`.

Hypervolume: of each search's feasible trials (status completed or stopped_early), the area their
(best_val_accuracy, log10 macs) points dominate, `hypervolume_2d(points, ["max", "min"], reference)`,
with ONE reference point for all searches: accuracy 0 and log10 of 1.1 x the largest macs of any
trial of any search (feasible or not). The cost is taken on a log scale, as costs that span orders
of magnitude are (13 thousand to 17 million MACs here): on a linear scale every small model sits at
about zero cost and the area is little more than the best small model's accuracy.
ratio_s = hv_optuna / hv_random for seed s; `hv_ratio` is the median over seeds. The target is
hv_ratio >= 1.05. `hv_ceiling` bounds what any searcher could show here: the hypervolume of the front
of every search's feasible trials pooled (all seeds, both algorithms) over each seed's random search,
median over seeds.

`saved_share`: of all trials of all searches, the fraction that ended infeasible before training
(status infeasible, no epoch reported): trials that would have trained but for the constraint check.

Usage: python benchmarks/pareto.py [--mnist-root ../shared/data] [--seeds 5] [--trials 24] [--epochs 2]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _args import OneLineParser, positive_int  # noqa: F401  (benchmarks/, the script's folder)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the best checkpoint's download
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"

REPO = Path(__file__).resolve().parents[1]
HV_RATIO_TARGET = 1.05
REFERENCE_MACS_FACTOR = 1.1  # the reference point's macs: this times the largest macs of any trial
FEASIBLE = ("completed", "stopped_early")
ALGORITHMS = ("random", "optuna")
CPUS = 2  # the local Ray session: MAX_CONCURRENT trials of 1 CPU each
MAX_CONCURRENT = 2

OBJECTIVES = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "macs", "mode": "min"}]
MODES = ["max", "min"]
CONSTRAINTS = ["params <= 60000"]
# On 1x28x28 images: mlp [16] 13k params .. [128] 102k; cnn (flattened head) 1.5k to over 200k params and
# 30k to 16M MACs. Infeasible: mlp [128], and the wide cnns; about 40% of uniform samples.
SPACE = {
    "model": {"choice": {
        "mlp": {"hidden_sizes": {"choice": [[16], [32], [64], [128]]}},
        "cnn": {"channels": {"int": [4, 48], "step": 4}, "depth": {"int": [1, 3]}},
    }},
    "lr": {"loguniform": [0.0001, 0.1]},
    "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.0, 0.95]}}}},
    "batch_size": {"choice": [32, 64, 128, 256]},
    "weight_decay": {"loguniform": [1e-6, 1e-2]},
    "dropout": {"uniform": [0.0, 0.5]},
}
TRAIN = {"seed": 0, "batchnorm": True, "global_pool": False}


@dataclass(frozen=True)
class SearchResult:
    algorithm: str
    seed: int
    search_id: str
    trials: object  # hpsearch.query.trials' DataFrame
    seconds: float  # run_search's wall time

    @property
    def feasible(self):
        return self.trials[self.trials["status"].isin(FEASIBLE)]

    @property
    def infeasible_share(self) -> float:
        return float((self.trials["status"] == "infeasible").mean()) if len(self.trials) else 0.0

    def points(self) -> list[tuple[float, float]]:
        """(best_val_accuracy, macs) of the feasible trials that have both."""
        rows = self.feasible[["best_val_accuracy", "macs"]].dropna()
        return [(float(accuracy), float(macs)) for accuracy, macs in rows.itertuples(index=False)]


# ------------------------------------------------------------------------------------------------ searches

def build_spec(*, algorithm: str, seed: int, args: argparse.Namespace, tracking_uri: str):
    from hpsearch.search_spaces.spec import validate_spec

    return validate_spec({
        "name": f"pareto-{algorithm}-seed{seed}",
        "dataset": {"name": "mnist", "root": args.mnist_root, "val_fraction": 0.2, "seed": 0},
        "search": {"algorithm": algorithm, "metric": "val_accuracy", "mode": "max", "seed": seed,
                   "num_samples": args.trials, "max_concurrent": MAX_CONCURRENT, "objectives": OBJECTIVES,
                   "constraints": CONSTRAINTS, "scheduler": {"name": "none"}},
        "resources": {"cpus": 1},
        "train": {**TRAIN, "epochs": args.epochs},
        "tracking": {"uri": tracking_uri, "experiment": "pareto"},
        "space": SPACE,
    })


def run_one(*, algorithm: str, seed: int, args: argparse.Namespace, work: Path) -> SearchResult:
    from hpsearch.platform.search import run_search
    from hpsearch.query import trials

    key = f"{algorithm}-{seed}"
    uri = f"sqlite:///{(work / key / 'mlflow.db').resolve()}"  # sqlite:////abs/path: a fresh store per search
    (work / key).mkdir(parents=True)
    spec = build_spec(algorithm=algorithm, seed=seed, args=args, tracking_uri=uri)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the live view and summary are not shown
        outcome = run_search(spec, storage=work / key / "ray", num_cpus=CPUS)
    seconds = time.perf_counter() - started
    table = trials(outcome.search_id, tracking_uri=uri)
    result = SearchResult(algorithm=algorithm, seed=seed, search_id=outcome.search_id, trials=table, seconds=seconds)
    statuses = table["status"].value_counts().to_dict()
    points = result.points()
    best = max((accuracy for accuracy, _ in points), default=float("nan"))
    print(f"  seed {seed} {algorithm:<6}: {len(table)} trials {dict(sorted(statuses.items()))}, best val_accuracy "
          f"{best:.4f}, search {outcome.status}, {seconds:.0f}s", flush=True)
    return result


# ------------------------------------------------------------------------------------------------ measures

def reference_point(results: list[SearchResult]) -> tuple[float, float]:
    """Accuracy 0 and 1.1 x the largest macs of any trial of any search, feasible or not."""
    largest = max(float(result.trials["macs"].max()) for result in results if "macs" in result.trials)
    return 0.0, REFERENCE_MACS_FACTOR * largest


def hypervolume(result: SearchResult, reference: tuple[float, float]) -> float:
    """The area of (accuracy, log10 macs) the search's feasible trials dominate."""
    from hpsearch.search_spaces.objectives import hypervolume_2d

    points = [(accuracy, math.log10(macs)) for accuracy, macs in result.points()]
    return hypervolume_2d(points, MODES, (reference[0], math.log10(reference[1])))


def saved_share(results: list[SearchResult]) -> float:
    """Of all trials, those that ended infeasible before their first epoch."""
    total = sum(len(result.trials) for result in results)
    saved = sum(int(((result.trials["status"] == "infeasible") & result.trials["epochs"].isna()).sum())
                for result in results)
    return saved / total if total else 0.0


def ratio_text(ratio: float) -> str:
    return "inf" if ratio == float("inf") else f"{ratio:.3f}"


def report(results: list[SearchResult], args: argparse.Namespace, seconds: float) -> None:
    reference = reference_point(results)
    by_key = {(result.algorithm, result.seed): result for result in results}
    print(f"reference point: val_accuracy {reference[0]}, macs {reference[1]:,.0f}")
    print(f"{'seed':>4} {'hv_random':>12} {'hv_optuna':>12} {'ratio':>7} {'infeasible_random':>18} "
          f"{'infeasible_optuna':>18}")
    ratios = []
    for seed in range(args.seeds):
        random, optuna = by_key[("random", seed)], by_key[("optuna", seed)]
        hv_random, hv_optuna = hypervolume(random, reference), hypervolume(optuna, reference)
        ratio = hv_optuna / hv_random if hv_random > 0 else float("inf")
        ratios.append(ratio)
        print(f"{seed:>4} {hv_random:>12.4f} {hv_optuna:>12.4f} {ratio_text(ratio):>7} "
              f"{random.infeasible_share:>18.3f} {optuna.infeasible_share:>18.3f}")
    median = statistics.median(ratios)
    # What any searcher could reach with these trials: every search's feasible trials pooled, against
    # each seed's random search. A hv_ratio target above this ceiling cannot be met on this problem.
    from hpsearch.search_spaces.objectives import hypervolume_2d

    pooled = [(accuracy, math.log10(macs)) for result in results for accuracy, macs in result.points()]
    hv_pooled = hypervolume_2d(pooled, MODES, (reference[0], math.log10(reference[1])))
    ceiling = statistics.median(hv_pooled / hypervolume(by_key[("random", seed)], reference) for seed in range(args.seeds))
    print(f"ceiling: the front of all {len(results)} searches' trials pooled has hypervolume {hv_pooled:.4f}, "
          f"{ceiling:.3f}x the median random search's", flush=True)
    saved = saved_share(results)
    print(f"median hv ratio (optuna / random) {ratio_text(median)} (target >= {HV_RATIO_TARGET}: "
          f"{'met' if median >= HV_RATIO_TARGET else 'NOT met'}); static constraints saved {saved:.3f} of "
          f"{sum(len(result.trials) for result in results)} trials from training", flush=True)
    print(f"hv_ratio={ratio_text(median)} hv_ratio_min={ratio_text(min(ratios))} hv_ratio_max={ratio_text(max(ratios))} "
          f"hv_ceiling={ceiling:.3f} "
          f"saved_share={saved:.3f} trials={args.trials} seeds={args.seeds} epochs={args.epochs} "
          f"seconds={seconds:.0f}")


# ------------------------------------------------------------------------------------------------ main

def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..N-1, each runs both searches")
    parser.add_argument("--trials", type=positive_int, default=24, help="trials per search")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs per feasible trial")
    args = parser.parse_args()
    args.mnist_root = str(Path(args.mnist_root).expanduser().resolve())
    if not (Path(args.mnist_root) / "MNIST" / "raw").is_dir():
        print(f"MNIST raw files not found under {args.mnist_root} (expected {args.mnist_root}/MNIST/raw); "
              f"pass --mnist-root", file=sys.stderr)
        return 2

    started = time.perf_counter()
    results: list[SearchResult] = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-pareto-") as folder:
        for seed in range(args.seeds):
            for algorithm in ALGORITHMS:
                results.append(run_one(algorithm=algorithm, seed=seed, args=args, work=Path(folder)))
    report(results, args, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
