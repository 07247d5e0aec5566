"""Search overhead: hpsearch on Ray Tune against the same trainings in a plain sequential loop.

Two workloads, each run both ways in this one process:
  1. 8 trials x 5 epochs of LeNet-5 on the real MNIST mini split (../shared/data): `ratio`
  2. 16 trials x 3 epochs of a small CNN on scikit-learn digits, trials of a fraction of a
     second as ASHA produces them: `short_ratio`
The plain loop trains one trial after another at one thread each; hpsearch runs 2 trials at a
time at one CPU each, so the ideal is the plain loop's time / 2. Each workload runs as its own
search in a Ray session of its own, as `hpsearch run` does; hpsearch's time excludes only
`ray.init`. `startup_s` is from this command's start to the first trial's first report.

Usage: python benchmarks/overhead.py [--mnist-root ../shared/data]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]
COMMAND_START = psutil.Process().create_time()  # wall-clock seconds since the epoch


def workloads(mnist_root: str) -> dict[str, dict]:
    lrs8 = [0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005]
    return {
        "ratio": {
            "name": "overhead-lenet5",
            "dataset": {"name": "mnist", "root": mnist_root, "val_fraction": 0.2},
            "train": {"model": "lenet5", "optimizer": "adam", "batch_size": 64, "epochs": 5},
            "space": {"lr": {"grid": lrs8}},
        },
        "short_ratio": {
            "name": "overhead-short",
            "dataset": {"name": "digits"},
            "train": {"model": "cnn", "channels": 8, "depth": 2, "optimizer": "adam", "batch_size": 64, "epochs": 3},
            "space": {"lr": {"grid": lrs8}, "batchnorm": {"grid": [True, False]}},
        },
    }


def plain_loop(spec) -> float:
    """The same trainings, one after another, one thread, data loaded once beforehand."""
    import torch

    from hpsearch.platform.tune_space import to_ray
    from hpsearch.search_spaces.space import flatten_config
    from hpsearch.trainables import TrainConfig, load_dataset, train
    from ray.tune.search.variant_generator import generate_variants

    torch.set_num_threads(1)
    data = load_dataset(**spec.dataset.model_dump())
    configs = [flatten_config(config) for _, config in generate_variants(to_ray(spec.space, "grid"))]
    started = time.perf_counter()
    for params in configs:
        train(TrainConfig.model_validate({**spec.train.model_dump(), **params}), lambda metrics: None, data=data)
    return time.perf_counter() - started


def hpsearch_run(spec, storage: Path) -> float:
    from hpsearch.platform.search import run_search

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the live view still runs; its text is not shown
        run_search(spec, storage=storage)
    return time.perf_counter() - started


def first_report_time(tracking_uri: str) -> float:
    """Wall-clock time of the earliest epoch-1 metric of any trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`hpsearch.role` = 'trial'")
    return min(point.timestamp for run in runs for point in client.get_metric_history(run.info.run_id, "val_loss")
               if point.step == 1) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    if not (Path(args.mnist_root) / "MNIST" / "raw").is_dir():
        print(f"MNIST raw files not found under {args.mnist_root}; pass --mnist-root", file=sys.stderr)
        return 2

    import ray

    from hpsearch.platform.search import init_ray
    from hpsearch.search_spaces.spec import validate_spec

    work = Path(tempfile.mkdtemp(prefix="hpsearch-overhead-"))
    results: dict[str, float] = {}
    init_seconds = []
    for key, raw in workloads(args.mnist_root).items():
        tracking_uri = f"sqlite:///{work / (key + '.db')}"
        spec = validate_spec({**raw, "search": {"algorithm": "grid", "num_samples": 1, "max_concurrent": 2},
                              "resources": {"cpus": 1}, "tracking": {"uri": tracking_uri, "experiment": key}})
        # Each workload is its own `hpsearch run`: a Ray session of its own, whose start is excluded.
        # Ray's first worker processes start, and import the trial modules, after ray.init returns:
        # that happens within the timed search.
        started = time.perf_counter()
        init_ray(num_cpus=2)
        init_seconds.append(time.perf_counter() - started)
        searched = hpsearch_run(spec, work / key)
        ray.shutdown()  # the plain loop runs with no Ray in the background
        if key == "ratio":
            results["startup_s"] = first_report_time(tracking_uri) - COMMAND_START
        plain = plain_loop(spec)
        ideal = plain / 2
        results[key] = searched / ideal
        print(f"{key}: hpsearch {searched:.2f}s, plain loop {plain:.2f}s, ideal {ideal:.2f}s "
              f"-> {searched / ideal:.2f}", flush=True)
    print(f"ray_init_s={max(init_seconds):.2f} startup_s={results['startup_s']:.2f} "
          f"ratio={results['ratio']:.3f} short_ratio={results['short_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
