"""Streamed-data throughput and memory: hpsearch's ImageFolder path against a bare torchvision loop.

Writes a real ImageFolder tree of PNG files (MNIST digits from ../shared/data, tinted RGB, written at
`--file-size` px and read at `--image-size` px, so both sides decode, convert, resize and crop every
image) with train/ val/ test/ folders, so that both sides read exactly the same files.

1. Throughput, in one process: hpsearch's streamed path (`load_dataset("imagefolder", in_memory=False,
   workers=W)` + `TrainingSession.run_epoch()`) against a bare loop (`torchvision.datasets.ImageFolder`,
   Resize + CenterCrop + PILToTensor, `DataLoader(num_workers=W, batch_size=B, shuffle=True)`, the batch
   normalized in the main process). Same model (the same factory), Adam at lr 1e-3, batch size, thread
   count and files. Each side's epoch is a training pass and a validation pass (batches of 256, no
   gradients), timed as a whole, wall clock; images/s = training images / epoch seconds. One warm-up
   epoch each, then epochs alternate (bare, hpsearch, hpsearch, bare, ...) so drift in the machine's speed hits both
   alike; the medians are compared. `ratio` = hpsearch / bare; the target is >= 0.95. The training
   pass alone is reported too (`train_ratio`: hpsearch's own images_per_second against the bare loop's
   training pass).
2. Memory: one epoch of hpsearch's streamed path, same settings, in a fresh process on a tree of N
   training images and on one of 4N (val and test grow alike). The peak memory of the trial and its
   loader processes: the trial's peak RSS (ru_maxrss, the kernel's high-water mark) plus each loader
   process's peak private memory (USS, sampled every 50 ms; their other pages are the trial's, forked,
   and already in its RSS: adding their RSS, or RUSAGE_CHILDREN's, would count them twice).
   `rss_growth` = peak at 4N / peak at N; the target is <= 1.10. The sampled peak PSS of all of them
   together is printed too; it is noisier (a sample may or may not land on a batch's transient peak).

By default the bare loop's DataLoader is the plain one (its workers start anew each pass);
--baseline-persistent keeps them (persistent_workers=True) as hpsearch does, comparing the
per-image work alone.

Usage: python benchmarks/data_throughput.py [--mnist-root ../shared/data] [--images 3000] [--image-size 64]
                                            [--file-size 80] [--workers 2] [--threads 1] [--batch-size 64]
                                            [--model cnn] [--rounds 5] [--skip-memory]
                                            [--baseline-persistent]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # imagefolder_data: real ImageFolder trees from MNIST

from hpsearch.trainables import TrainConfig, TrainingSession, build_model, load_dataset  # noqa: E402

EVAL_BATCH_SIZE = 256  # hpsearch's batch for streamed evaluation (train.STREAMED_EVAL_BATCH_SIZE)
RATIO_TARGET, GROWTH_TARGET = 0.95, 1.10
SAMPLE_SECONDS = 0.05


# ------------------------------------------------------------------------------------------------ data

def write_trees(mnist_root: Path, root: Path, *, train_images: int, file_size: int) -> None:
    """root/train, root/val, root/test, one folder per digit; val and test a tenth of train each.

    The 8,000 MNIST images of ../shared/data hold 723 of the rarest digit, too few for a large tree: a
    tree that needs more writes the digits again mirrored or transposed (as real to decode, and not the
    same files), each variant in a subfolder of the class folder, where both ImageFolder readers look.
    """
    from imagefolder_data import NAMES, mnist_arrays, write_tree

    images, labels = mnist_arrays(mnist_root)
    variants = (images, images[:, :, ::-1], images[:, ::-1, :], images.transpose(0, 2, 1))
    rarest = int(min((labels == digit).sum() for digit in range(10)))
    held_pool = rarest // 10  # per digit and variant: test from [0, held_pool), val from the next as many
    train_pool = rarest - 2 * held_pool
    per_class = train_images // 10
    held = max(1, per_class // 10)
    if per_class > train_pool * len(variants) or held > held_pool * len(variants):
        raise SystemExit(f"--images {train_images}: at most {train_pool * len(variants) * 10} training images "
                         f"(the MNIST files hold {rarest} of the rarest digit; the memory run writes 4N)")
    staging = root / ".staging"
    for split, count, offset, pool in (("test", held, 0, held_pool), ("val", held, held_pool, held_pool),
                                       ("train", per_class, 2 * held_pool, train_pool)):
        for variant, remaining in enumerate(range(count, 0, -pool)):
            stage = staging / f"{split}{variant}"
            write_tree(stage, variants[variant], labels, per_class=min(pool, remaining), rgb=True, size=file_size,
                       offset=offset)
            for name in NAMES:
                (root / split / name).mkdir(parents=True, exist_ok=True)
                (stage / name).rename(root / split / name / f"v{variant}")
    for stage in staging.iterdir():
        stage.rmdir()
    staging.rmdir()


def hpsearch_data(root: Path, args):
    return load_dataset("imagefolder", root=str(root), image_size=args.image_size, channels=3, in_memory=False,
                        workers=args.workers, val_fraction=0.1, test_fraction=0.1)


def train_config(args) -> TrainConfig:
    return TrainConfig(model=args.model, batch_size=args.batch_size, epochs=1000, augment="none", lr=1e-3,
                       optimizer="adam")


# ------------------------------------------------------------------------------------------------ bare loop

class BareLoop:
    """What one writes by hand with torchvision: ImageFolder, a DataLoader, normalization per batch."""

    def __init__(self, root: Path, config: TrainConfig, data, args) -> None:
        import torchvision
        from torchvision import transforms

        transform = transforms.Compose([transforms.Resize(args.image_size), transforms.CenterCrop(args.image_size),
                                        transforms.PILToTensor()])
        self.train_set = torchvision.datasets.ImageFolder(str(root / "train"), transform=transform)
        self.val_set = torchvision.datasets.ImageFolder(str(root / "val"), transform=transform)
        persistent = args.baseline_persistent and args.workers > 0
        self.train_loader = torch.utils.data.DataLoader(self.train_set, batch_size=config.batch_size, shuffle=True,
                                                        num_workers=args.workers, persistent_workers=persistent)
        self.val_loader = torch.utils.data.DataLoader(self.val_set, batch_size=EVAL_BATCH_SIZE,
                                                      num_workers=args.workers, persistent_workers=persistent)
        torch.manual_seed(config.seed)
        self.model = build_model(config, input_shape=(3, args.image_size, args.image_size),
                                 num_classes=len(self.train_set.classes))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std).view(1, -1, 1, 1)

    def run_epoch(self) -> tuple[float, float]:
        """(epoch seconds, training-pass seconds): a training pass, then a validation pass."""
        started = time.perf_counter()
        self.model.train()
        for images, labels in self.train_loader:
            loss = F.cross_entropy(self.model((images.float() - self.mean) / self.std), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        train_seconds = time.perf_counter() - started
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in self.val_loader:
                logits = self.model((images.float() - self.mean) / self.std)
                F.cross_entropy(logits, labels, reduction="sum").item()
                correct += int((logits.argmax(1) == labels).sum())
        return time.perf_counter() - started, train_seconds


def throughput(root: Path, args) -> dict[str, float]:
    data = hpsearch_data(root, args)  # scanned, split and its statistics computed before any timing
    config = train_config(args)
    session = TrainingSession(config, data=data)
    bare = BareLoop(root, config, data, args)
    for name, theirs_set, ours_split in (("train", bare.train_set, data.train), ("val", bare.val_set, data.val)):
        files = {os.path.realpath(path) for path, _ in theirs_set.samples}
        if files != {os.path.realpath(os.fsdecode(path)) for path in ours_split.dataset.split.paths}:
            raise SystemExit(f"the two sides read different {name} files: torchvision {len(theirs_set)}, "
                             f"hpsearch {len(ours_split)}")
    images = len(data.train)
    ours, theirs, ours_train, theirs_train = [], [], [], []

    def timed_hpsearch() -> tuple[float, dict]:
        started = time.perf_counter()
        metrics = session.run_epoch()
        return time.perf_counter() - started, metrics

    try:
        for epoch in range(args.rounds + 1):  # epoch 0 of each warms up loaders, caches and allocators
            if epoch % 2:  # which side goes first alternates too: ABBA
                ours_s, metrics = timed_hpsearch()
                epoch_s, train_s = bare.run_epoch()
            else:
                epoch_s, train_s = bare.run_epoch()
                ours_s, metrics = timed_hpsearch()
            print(f"  epoch {epoch}{' (warm-up)' if not epoch else ''}: bare {images / epoch_s:,.0f} images/s "
                  f"(training pass {images / train_s:,.0f}), hpsearch {images / ours_s:,.0f} images/s "
                  f"(training pass {metrics['images_per_second']:,.0f})", flush=True)
            if epoch:
                theirs.append(images / epoch_s)
                theirs_train.append(images / train_s)
                ours.append(images / ours_s)
                ours_train.append(metrics["images_per_second"])
    finally:
        session.close()
    return {"hpsearch_ips": statistics.median(ours), "baseline_ips": statistics.median(theirs),
            "hpsearch_train_ips": statistics.median(ours_train), "baseline_train_ips": statistics.median(theirs_train),
            "images": images}


# ------------------------------------------------------------------------------------------------ memory

def memory_child(root: Path, args) -> int:
    """One epoch of hpsearch's streamed path in this fresh process; prints its own peak figures as JSON."""
    torch.set_num_threads(args.threads)
    data = hpsearch_data(root, args)
    session = TrainingSession(train_config(args), data=data)
    try:
        metrics = session.run_epoch()
    finally:
        session.close()  # joins the loader processes, so that RUSAGE_CHILDREN covers them
    print(json.dumps({"self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                      "images": len(data.train), "images_per_second": metrics["images_per_second"]}))
    return 0


def peak_memory(root: Path, args) -> dict[str, float]:
    """Run memory_child on `root`: the trial's peak RSS (the kernel's high-water mark) plus the peak
    private memory (USS, sampled) of each of its loader processes, whose other pages are shared with
    the trial (forked) and already in its RSS; and, sampled, the peak PSS of all of them together."""
    import psutil

    command = [sys.executable, __file__, "--memory-child", str(root), "--image-size", str(args.image_size),
               "--workers", str(args.workers), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               "--model", args.model]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    worker_uss: dict[int, int] = {}
    peak_pss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        trial = psutil.Process(child.pid)
        while not done.is_set():
            try:
                processes = [trial, *trial.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in processes:
                try:
                    info = process.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += info.pss
                if process.pid != trial.pid:
                    worker_uss[process.pid] = max(worker_uss.get(process.pid, 0), info.uss)
            peak_pss = max(peak_pss, total)
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"the memory trial on {root} failed (exit {child.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    trial_mb, workers_mb = report["self_maxrss_kb"] / 1024, sum(worker_uss.values()) / 2**20
    return {"rss_mb": trial_mb + workers_mb, "trial_mb": trial_mb, "workers_mb": workers_mb,
            "workers": len(worker_uss), "pss_mb": peak_pss / 2**20, "images": report["images"]}


# ------------------------------------------------------------------------------------------------ main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=3000, help="training images N (the memory run also uses 4N)")
    parser.add_argument("--image-size", type=int, default=64, help="side the images are read at")
    parser.add_argument("--file-size", type=int, default=80, help="side the PNG files are written at")
    parser.add_argument("--workers", type=int, default=2, help="loader processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs of each side, after one warm-up")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--baseline-persistent", action="store_true",
                        help="the bare loop keeps its loader processes between passes, as hpsearch does")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(Path(args.memory_child), args)
    torch.set_num_threads(args.threads)
    mnist_root = Path(args.mnist_root)
    if not (mnist_root / "MNIST" / "raw").is_dir():
        print(f"MNIST not found under {mnist_root} (expected {mnist_root / 'MNIST' / 'raw'}); pass --mnist-root",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hpsearch-data-throughput-") as folder:
        small, large = Path(folder) / "small", Path(folder) / "large"
        started = time.perf_counter()
        write_trees(mnist_root, small, train_images=args.images, file_size=args.file_size)
        if not args.skip_memory:
            write_trees(mnist_root, large, train_images=4 * args.images, file_size=args.file_size)
        print(f"wrote the PNG trees in {time.perf_counter() - started:.1f}s; {os.cpu_count()} CPUs", flush=True)

        rates = throughput(small, args)
        ratio = rates["hpsearch_ips"] / rates["baseline_ips"]
        train_ratio = rates["hpsearch_train_ips"] / rates["baseline_train_ips"]
        print(f"throughput (epoch = training + validation pass): hpsearch {rates['hpsearch_ips']:,.0f} images/s, "
              f"bare torchvision {rates['baseline_ips']:,.0f} images/s -> ratio {ratio:.3f} (target >= {RATIO_TARGET}: "
              f"{'met' if ratio >= RATIO_TARGET else 'NOT met'})", flush=True)
        print(f"training pass alone: hpsearch {rates['hpsearch_train_ips']:,.0f} images/s, bare "
              f"{rates['baseline_train_ips']:,.0f} images/s -> {train_ratio:.3f}", flush=True)
        line = (f"ratio={ratio:.3f} hpsearch_ips={rates['hpsearch_ips']:.0f} baseline_ips={rates['baseline_ips']:.0f} "
                f"train_ratio={train_ratio:.3f}")
        if not args.skip_memory:
            low, high = peak_memory(small, args), peak_memory(large, args)
            growth = high["rss_mb"] / low["rss_mb"]
            for name, figures in (("N", low), ("4N", high)):
                print(f"memory, {figures['images']} training images ({name}): {figures['rss_mb']:.0f} MB = trial peak "
                      f"RSS {figures['trial_mb']:.0f} MB + {figures['workers']} loader processes' private "
                      f"{figures['workers_mb']:.0f} MB (sampled peak PSS of all: {figures['pss_mb']:.0f} MB)", flush=True)
            print(f"rss_growth {growth:.3f} (target <= {GROWTH_TARGET}: {'met' if growth <= GROWTH_TARGET else 'NOT met'}); "
                  f"trial alone {high['trial_mb'] / low['trial_mb']:.3f}, loader processes "
                  f"{high['workers_mb'] / low['workers_mb']:.3f}, sampled PSS {high['pss_mb'] / low['pss_mb']:.3f}",
                  flush=True)
            line += f" rss_growth={growth:.3f} rss_small_mb={low['rss_mb']:.0f} rss_large_mb={high['rss_mb']:.0f}"
    print(f"{line} images={rates['images']} workers={args.workers} threads={args.threads} "
          f"baseline_persistent={int(args.baseline_persistent)} "
          f"image_size={args.image_size} batch_size={args.batch_size} model={args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
