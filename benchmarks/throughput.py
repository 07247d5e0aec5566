"""Training throughput: hpsearch's training loop against a minimal hand-written tensor loop.

Same model (built by the same factory), optimizer, batch size, data and thread count, in one
process; epochs of the two alternate so that drift in the machine's speed hits both alike.
Only the training pass is timed (validation excluded). `ratio` = hpsearch images/s / hand-written
images/s; the target is >= 0.9.

Usage: python benchmarks/throughput.py [--mnist-root ../shared/data] [--epochs 4] [--threads 1]
Last line: key=value pairs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hpsearch.trainables import TrainConfig, TrainingSession, build_model, load_dataset

REPO = Path(__file__).resolve().parents[1]


def hand_written_epoch(model, optimizer, images, labels, mean, std, batch_size, generator) -> float:
    """The loop one would write by hand: uint8 tensors in memory, normalized per batch. Images/s."""
    model.train()
    started = time.perf_counter()
    for batch in torch.randperm(len(labels), generator=generator).split(batch_size):
        inputs = (images[batch].float() - mean) / std
        loss = F.cross_entropy(model(inputs), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(labels) / (time.perf_counter() - started)


def measure(config: TrainConfig, data, epochs: int) -> tuple[float, float]:
    session = TrainingSession(config, data=data)
    torch.manual_seed(config.seed)
    model = build_model(config, input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    generator = torch.Generator().manual_seed(config.seed)
    ours, theirs = [], []
    for epoch in range(epochs + 1):  # the first epoch of each warms up caches and allocators
        rate_ours = session.run_epoch()["images_per_second"]
        rate_theirs = hand_written_epoch(model, optimizer, data.train.images, data.train.labels, mean, std,
                                         config.batch_size, generator)
        if epoch:
            ours.append(rate_ours)
            theirs.append(rate_theirs)
    return statistics.median(ours), statistics.median(theirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workloads = {"digits_cnn": (load_dataset("digits"), TrainConfig(model="cnn", batch_size=64, epochs=100))}
    if (Path(args.mnist_root) / "MNIST" / "raw").is_dir():
        mnist = load_dataset("mnist", root=args.mnist_root)
        workloads["mnist_lenet5"] = (mnist, TrainConfig(model="lenet5", batch_size=64, epochs=100))
        workloads["mnist_cnn"] = (mnist, TrainConfig(model="cnn", channels=32, batch_size=128, epochs=100))
    else:
        print(f"MNIST not found under {args.mnist_root}: digits only", file=sys.stderr)
    ratios = {}
    for name, (data, config) in workloads.items():
        ours, theirs = measure(config, data, args.epochs)
        ratios[name] = ours / theirs
        print(f"{name}: hpsearch {ours:,.0f} images/s, hand-written {theirs:,.0f} images/s -> {ours / theirs:.3f}",
              flush=True)
    gpu = "available" if torch.cuda.is_available() else "unavailable"
    pairs = " ".join(f"ratio_{name}={value:.3f}" for name, value in ratios.items())
    print(f"ratio={min(ratios.values()):.3f} {pairs} threads={args.threads} gpu={gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
