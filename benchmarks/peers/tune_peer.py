"""The peer: the Ray Tune script a user would write by hand instead of using hpsearch.

Written as Ray Tune's docs teach it (Ray 2.60): a function trainable that reports every epoch with
`tune.report`; the dataset loaded once in the driver and handed to every trial by
`tune.with_parameters`; one CPU per trial by `tune.with_resources`; `reuse_actors=True`; and
`MLflowLoggerCallback`, which logs each trial as a flat MLflow run (no parent run, no checkpoints).
All else is Tune's default: its console output, its result files, its experiment snapshots.

The epochs themselves are hpsearch's training loop (`hpsearch.trainables.train`, which knows nothing
of Ray or MLflow), so the peer trains exactly what hpsearch trains for the same spec: same model,
data, epochs, batch size and seeds. What differs between the two is everything around the epochs,
which is what benchmarks/overhead.py and benchmarks/scale.py compare.

The peer reads hpsearch's validated spec (`run_peer`) so that the benchmarks give both the same
trials; it takes a grid of plain values, the one space a user writes as `tune.grid_search` lists.

Usage: python benchmarks/peers/tune_peer.py SPEC.yaml [--tracking-uri sqlite:///peer.db]
           [--storage DIR] [--num-cpus N] [--quiet]
Last line: key=value pairs: `seconds` (from loading the data to the search's end; Ray's start is
`ray_init_s`, apart) and `driver_peak_rss_mb` (this process's peak resident memory).
The benchmarks run it so, in a process of its own with the environment they were started in: a
process that has run an hpsearch search has Ray's Tune controller patched and Tune's environment
variables set by hpsearch (hpsearch/platform/compat.py, _ray_env.py), which a user's script has not.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import ray
import torch
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback

from hpsearch.trainables import DatasetSplits, TrainConfig, load_dataset, train


# ------------------------------------------------------------------------------------ the user's script

def train_trial(config: dict[str, Any], *, data: DatasetSplits, settings: dict[str, Any]) -> None:
    """One trial: the fixed training settings under this trial's config, every epoch reported to Tune."""
    torch.set_num_threads(1)  # one thread for the trial's one CPU
    train(TrainConfig.model_validate({**settings, **config}), lambda metrics: tune.report(metrics), data=data)


def search(param_space: dict[str, Any], *, data: DatasetSplits, settings: dict[str, Any], metric: str, mode: str,
           max_concurrent: int, cpus_per_trial: float, tracking_uri: str, experiment: str, storage: Path,
           name: str) -> tune.ResultGrid:
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data, settings=settings),
                                    {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, max_concurrent_trials=max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage),
            callbacks=[MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment)]),
    )
    return tuner.fit()


# ------------------------------------------------------------------------------------ run on hpsearch's spec

@contextlib.contextmanager
def ray_session(*, num_cpus: int) -> Iterator[float]:
    """A local Ray session of the peer's own; yields ray.init's seconds."""
    try:
        started = time.perf_counter()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        yield time.perf_counter() - started
    finally:
        ray.shutdown()


def grid_space(spec) -> dict[str, Any]:
    """The spec's space as a user writes it for Tune: `tune.grid_search` over each parameter's values."""
    param_space: dict[str, Any] = {}
    for param in spec.space.params:
        if param.branches is not None or param.kind not in ("grid", "choice", "constant"):
            raise ValueError(f"{param.path}: the peer takes a grid of plain values, not {param.kind!r}"
                             f"{' with branches' if param.branches is not None else ''}")
        values = list(param.values)
        param_space[param.name] = values[0] if param.kind == "constant" else tune.grid_search(values)
    return param_space


def run_peer(spec, *, storage: Path, tracking_uri: str, quiet: bool = True) -> float:
    """Run the peer on `spec`'s trials, in the Ray session already started; returns its wall seconds
    from loading the data to the end of the search. Raises RuntimeError if a trial failed."""
    started = time.perf_counter()
    data = load_dataset(**spec.dataset.model_dump())
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull if quiet else sys.stdout):
        results = search(grid_space(spec), data=data, settings=spec.train.model_dump(), metric=spec.search.metric,
                         mode=spec.search.mode, max_concurrent=spec.search.max_concurrent,
                         cpus_per_trial=spec.resources.cpus, tracking_uri=tracking_uri,
                         experiment=spec.tracking.experiment, storage=storage, name=spec.name)
    seconds = time.perf_counter() - started
    if results.errors:
        raise RuntimeError(f"the peer's search of {spec.name!r}: {len(results.errors)} trials failed, the first "
                           f"with {results.errors[0]!r}")
    return seconds


def main() -> int:
    from hpsearch.search_spaces.spec import SpecError, load_spec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="an hpsearch spec (YAML) whose space is a grid of plain values")
    parser.add_argument("--tracking-uri", default="sqlite:///peer.db")
    parser.add_argument("--storage", default="peer_results", help="Tune's experiment folder")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="Ray's logical CPUs")
    parser.add_argument("--quiet", action="store_true", help="without Tune's progress output")
    args = parser.parse_args()
    try:
        spec = load_spec(args.spec)
        grid_space(spec)
    except (SpecError, ValueError, OSError) as error:
        print(f"{args.spec}: {error}", file=sys.stderr)
        return 2
    with ray_session(num_cpus=args.num_cpus) as init_seconds:
        seconds = run_peer(spec, storage=Path(args.storage).resolve(), tracking_uri=args.tracking_uri,
                           quiet=args.quiet)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peer: {spec.name} in {seconds:.2f}s (ray.init {init_seconds:.2f}s more), tracked in {args.tracking_uri}")
    print(f"seconds={seconds:.3f} ray_init_s={init_seconds:.3f} driver_peak_rss_mb={peak_rss_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
