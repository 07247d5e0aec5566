"""Search overhead: hpsearch against the same trainings in a plain sequential loop, and against the peer.

The peer is the Ray Tune script a user would write instead of using hpsearch, as Tune's docs teach
it: `reuse_actors=True`, `MLflowLoggerCallback`, flat runs, no checkpoints (benchmarks/peers/tune_peer.py).

Two workloads, each run three ways in one sitting, on the same trials (same model, data, epochs,
batch size and seeds: a grid over lr, and batchnorm for the second), 2 at a time at one CPU each:
  1. 8 trials x 25 epochs of LeNet-5 on the real MNIST mini split (../shared/data), trials of about
     10 s each on this machine's cores, as realistic CPU trials are
  2. 16 trials x 3 epochs of a small CNN on scikit-learn digits, trials of a fraction of a second
     as ASHA produces them (the `short_` figures)
The ways:
  plain loop  the trainings one after another at one thread each, data loaded beforehand, in this
              process with no Ray running; the ideal is its time / 2 (2 cores, 2 trials at a time)
  plain pair  the floor any design with two processes meets on this machine: the same trainings in
              two plain processes side by side, every other one each, timed from when both have
              loaded their data (two processes at once run slower than one alone where they share
              caches and memory bandwidth: `floor_ratio`)
  hpsearch    `run_search` as `hpsearch run` runs it, tracking, checkpoints, the best trial's test
              evaluation and summary included, in a Ray session of its own; its time excludes only
              `ray.init` (Ray's first worker processes start after it returns, within the search)
  peer        tune_peer.py in a process of its own, started with this command's environment: one
              that has run an hpsearch search has Ray patched by hpsearch (platform/compat.py),
              a user's script has not. A Ray session of its own; its time, from loading the data to
              the search's end, excludes `ray.init` and its imports. It tracks to a fresh SQLite
              store, as hpsearch does.
Figures (the second workload's carry the prefix `short_`):
  overhead_s       hpsearch's time - the ideal
  peer_overhead_s  the peer's time - the ideal
  peer_ratio       overhead_s / peer_overhead_s                  target <= 0.6 (short_peer_ratio too)
  ratio            hpsearch's time / the ideal, on the 10 s trials   target <= 1.15
  startup_s        from this command's start to the first trial's first report (hpsearch, workload 1,
                   which runs first in this process)
  ray_init_s       the longest `ray.init` of hpsearch's sessions; peer_ray_init_s the peer's
  floor_ratio      the plain pair's time / the ideal, on the 10 s trials: what `ratio` is held to at least

Usage: python benchmarks/overhead.py [--mnist-root ../shared/data] [--epochs 25]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _args import OneLineParser, positive_int  # noqa: F401  (benchmarks/, the script's folder)

import psutil

# The environment this command was started in, before importing hpsearch.platform sets Tune's
# variables in it (platform/_ray_env.py): the peer runs in it, as a user's script would.
COMMAND_ENV = dict(os.environ)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "benchmarks" / "peers" / "tune_peer.py"
COMMAND_START = psutil.Process().create_time()  # wall-clock seconds since the epoch
CPUS = 2  # the local Ray sessions: MAX_CONCURRENT trials of 1 CPU each
MAX_CONCURRENT = 2
TARGETS = {"ratio": 1.15, "peer_ratio": 0.6, "short_peer_ratio": 0.6}


def workloads(mnist_root: str, *, epochs: int = 25) -> dict[str, dict]:
    """Each workload's spec without its search, resources and tracking, by the prefix of its figures."""
    lrs8 = [0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005]
    return {
        "": {  # LeNet-5 at about 0.4 s an epoch on one core: 25 epochs make trials of about 10 s
            "name": "overhead-lenet5",
            "dataset": {"name": "mnist", "root": mnist_root, "val_fraction": 0.2},
            "train": {"model": "lenet5", "optimizer": "adam", "batch_size": 64, "epochs": epochs},
            "space": {"lr": {"grid": lrs8}},
        },
        "short_": {
            "name": "overhead-short",
            "dataset": {"name": "digits"},
            "train": {"model": "cnn", "channels": 8, "depth": 2, "optimizer": "adam", "batch_size": 64, "epochs": 3},
            "space": {"lr": {"grid": lrs8}, "batchnorm": {"grid": [True, False]}},
        },
    }


def plain_loop(spec, *, half: int | None = None, ready: Path | None = None) -> float:
    """The same trainings, one after another, one thread, data loaded once beforehand; with `half` (0
    or 1), every other one, timed once the process of the other half is `ready` too."""
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it on its first step: no trial's work)

    from hpsearch.platform.tune_space import to_ray
    from hpsearch.search_spaces.space import flatten_config
    from hpsearch.trainables import TrainConfig, load_dataset, train
    from ray.tune.search.variant_generator import generate_variants

    torch.set_num_threads(1)
    data = load_dataset(**spec.dataset.model_dump())
    configs = [flatten_config(config) for _, config in generate_variants(to_ray(spec.space, "grid"))]
    if half is not None:
        configs = configs[half::2]
        (ready / str(half)).touch()
        while not all((ready / str(other)).exists() for other in (0, 1)):
            time.sleep(0.01)
    started = time.perf_counter()
    for params in configs:
        train(TrainConfig.model_validate({**spec.train.model_dump(), **params}), lambda metrics: None, data=data)
    return time.perf_counter() - started


def plain_pair(raw_spec: dict, work: Path) -> float:
    """The plain loop's trainings in two processes side by side: the later one's time."""
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(raw_spec))
    halves = [subprocess.Popen([sys.executable, __file__, "--half", str(half), "--spec", str(spec_file)],
                               env=COMMAND_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for half in (0, 1)]
    seconds = []
    for process in halves:
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a plain process failed (exit status {process.returncode}):\n{err[-3000:]}")
        seconds.append(float(out.split()[-1]))
    return max(seconds)


def half_main(half: int, spec_file: Path) -> int:
    """One process of the plain pair: its half's seconds, printed."""
    from hpsearch.search_spaces.spec import validate_spec

    print(plain_loop(validate_spec(json.loads(spec_file.read_text())), half=half, ready=spec_file.parent))
    return 0


def hpsearch_run(spec, storage: Path) -> float:
    from hpsearch.platform.search import run_search

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the live view still runs; its text is not shown
        run_search(spec, storage=storage)
    return time.perf_counter() - started


def peer_run(raw_spec: dict, *, work: Path, tracking_uri: str, num_cpus: int) -> dict[str, float]:
    """The peer on `raw_spec`'s trials, in a process of its own; its last line's figures (seconds,
    ray_init_s, driver_peak_rss_mb)."""
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "spec.yaml"
    spec_file.write_text(json.dumps(raw_spec, indent=1))  # JSON is YAML
    done = subprocess.run([sys.executable, str(PEER), str(spec_file), "--tracking-uri", tracking_uri,
                           "--storage", str(work / "ray"), "--num-cpus", str(num_cpus), "--quiet"],
                          env=COMMAND_ENV, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the peer failed (exit status {done.returncode}):\n{done.stderr[-3000:]}")
    return {key: float(value) for key, value in (pair.split("=", 1) for pair in lines[-1].split())}


def first_report_time(tracking_uri: str) -> float:
    """Wall-clock time of the earliest epoch-1 metric of any trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`hpsearch.role` = 'trial'")
    return min(point.timestamp for run in runs for point in client.get_metric_history(run.info.run_id, "val_loss")
               if point.step == 1) / 1000


def share(numerator: float, denominator: float) -> float:
    """numerator / denominator; infinite when the denominator is not positive (a peer at the ideal)."""
    return numerator / denominator if denominator > 0 else float("inf")


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=positive_int, default=25, help="epochs per LeNet-5 trial (fewer: a quick try)")
    parser.add_argument("--half", type=int, choices=(0, 1), help=argparse.SUPPRESS)  # one of the plain pair's
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.half is not None:
        return half_main(args.half, Path(args.spec))
    args.mnist_root = str(Path(args.mnist_root).expanduser().resolve())
    if not (Path(args.mnist_root) / "MNIST" / "raw").is_dir():
        print(f"MNIST raw files not found under {args.mnist_root}; pass --mnist-root", file=sys.stderr)
        return 2

    import ray

    from hpsearch.platform.search import init_ray
    from hpsearch.search_spaces.spec import validate_spec

    results: dict[str, float] = {}
    init_seconds, peer_init_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="hpsearch-overhead-") as folder:
        work = Path(folder)
        for prefix, raw in workloads(args.mnist_root, epochs=args.epochs).items():
            name = raw["name"]
            raw = {**raw, "search": {"algorithm": "grid", "num_samples": 1, "max_concurrent": MAX_CONCURRENT},
                   "resources": {"cpus": 1}}
            (work / name).mkdir()
            tracking_uri = f"sqlite:///{work / name / 'hpsearch.db'}"
            spec = validate_spec({**raw, "tracking": {"uri": tracking_uri, "experiment": name}})
            # Each workload is its own `hpsearch run`: a Ray session of its own, whose start is excluded.
            # Ray's first worker processes start, and import the trial modules, after ray.init returns:
            # that happens within the timed search.
            started = time.perf_counter()
            init_ray(num_cpus=CPUS)
            init_seconds.append(time.perf_counter() - started)
            searched = hpsearch_run(spec, work / name / "hpsearch")
            ray.shutdown()  # the peer and the plain loop run with no Ray of hpsearch's in the background
            if not prefix:
                results["startup_s"] = first_report_time(tracking_uri) - COMMAND_START
            peer = peer_run({**raw, "tracking": {"experiment": name}}, work=work / name / "peer",
                            tracking_uri=f"sqlite:///{work / name / 'peer.db'}", num_cpus=CPUS)
            peer_init_seconds.append(peer["ray_init_s"])
            ideal = plain_loop(spec) / 2
            floor = plain_pair({**raw, "tracking": {"uri": tracking_uri, "experiment": name}}, work / name / "pair")
            results[prefix + "floor_ratio"] = floor / ideal
            results[prefix + "overhead_s"] = searched - ideal
            results[prefix + "peer_overhead_s"] = peer["seconds"] - ideal
            results[prefix + "peer_ratio"] = share(searched - ideal, peer["seconds"] - ideal)
            results[prefix + "ratio"] = searched / ideal
            print(f"{spec.name}: ideal {ideal:.2f}s (plain loop / 2); hpsearch {searched:.2f}s, "
                  f"{searched - ideal:+.2f}s; "
                  f"peer {peer['seconds']:.2f}s, {peer['seconds'] - ideal:+.2f}s; hpsearch's overhead / the peer's "
                  f"{results[prefix + 'peer_ratio']:.2f}; hpsearch / ideal {searched / ideal:.2f}; "
                  f"two plain processes / ideal {floor / ideal:.2f}", flush=True)
    verdicts = ", ".join(f"{name} {results[name]:.3f} <= {target} {'met' if results[name] <= target else 'NOT met'}"
                         for name, target in TARGETS.items())
    print(f"targets: {verdicts}")
    print(f"ray_init_s={max(init_seconds):.2f} peer_ray_init_s={max(peer_init_seconds):.2f} "
          f"startup_s={results['startup_s']:.2f} overhead_s={results['overhead_s']:.2f} "
          f"peer_overhead_s={results['peer_overhead_s']:.2f} peer_ratio={results['peer_ratio']:.3f} "
          f"ratio={results['ratio']:.3f} floor_ratio={results['floor_ratio']:.3f} short_overhead_s={results['short_overhead_s']:.2f} "
          f"short_peer_overhead_s={results['short_peer_overhead_s']:.2f} "
          f"short_peer_ratio={results['short_peer_ratio']:.3f} short_ratio={results['short_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
