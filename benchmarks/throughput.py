"""Training throughput: hpsearch's training loop against a minimal hand-written tensor loop.

Same model (built by the same factory), optimizer, batch size, data and thread count, in one
process; epochs of the two alternate so that drift in the machine's speed hits both alike.
Only the training pass is timed (validation excluded). `ratio` = hpsearch images/s / hand-written
images/s; the target is >= 0.9.

With a GPU (or with --time-to-accuracy on a CPU), it also times reaching a validation accuracy
(99% by default) on the MNIST files: hpsearch's loop against an airbench-style loop (data resident
on the device in half precision, no DataLoader, channels_last), same model, optimizer and batch size.

Usage: python benchmarks/throughput.py [--mnist-root ../shared/data] [--epochs 4] [--threads 1]
                                       [--time-to-accuracy] [--target 0.99]
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


def airbench_style_seconds(config: TrainConfig, data, device: torch.device, target: float, max_epochs: int):
    """Seconds (and epochs) a minimal device-resident loop needs to reach `target` val accuracy."""
    half = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)

    def resident(split):
        images = ((split.images.to(device).float() - mean) / std).to(half)
        return images.contiguous(memory_format=torch.channels_last), split.labels.to(device)

    (train_x, train_y), (val_x, val_y) = resident(data.train), resident(data.val)
    torch.manual_seed(config.seed)
    model = build_model(config, input_shape=data.input_shape, num_classes=data.num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    _synchronize(device)
    started = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_y), device=device).split(config.batch_size):
            with torch.autocast(device.type, dtype=half):
                loss = F.cross_entropy(model(train_x[batch]).float(), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=half):
            accuracy = float((model(val_x).argmax(1) == val_y).float().mean())
        if accuracy >= target:
            break
    _synchronize(device)
    return time.perf_counter() - started, epoch, accuracy


def hpsearch_seconds(config: TrainConfig, data, device: torch.device, target: float, max_epochs: int):
    session = TrainingSession(config.model_copy(update={"epochs": max_epochs}), data=data, device=device)
    _synchronize(device)
    started = time.perf_counter()
    while not session.finished:
        accuracy = session.run_epoch()["val_accuracy"]
        if accuracy >= target:
            break
    _synchronize(device)
    return time.perf_counter() - started, session.epoch, accuracy


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_to_accuracy(data, target: float) -> str:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = TrainConfig(model="cnn", channels=32, depth=2, global_pool=False, batchnorm=True, lr=2e-3,
                         batch_size=256, epochs=30)
    ours = hpsearch_seconds(config, data, device, target, max_epochs=30)
    theirs = airbench_style_seconds(config, data, device, target, max_epochs=30)
    for name, (seconds, epochs, accuracy) in (("hpsearch", ours), ("airbench-style", theirs)):
        print(f"time to {target:.2%} on {device.type}: {name} {seconds:.2f}s in {epochs} epochs "
              f"(val accuracy {accuracy:.4f})", flush=True)
    return (f"tta_hpsearch_s={ours[0]:.2f} tta_airbench_s={theirs[0]:.2f} tta_ratio={theirs[0] / ours[0]:.3f} "
            f"tta_reached={int(ours[2] >= target)}{int(theirs[2] >= target)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-to-accuracy", action="store_true", help="also on a CPU (always on a GPU)")
    parser.add_argument("--target", type=float, default=0.99, help="validation accuracy to reach")
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
    timed = ""
    if (torch.cuda.is_available() or args.time_to_accuracy) and "mnist_cnn" in workloads:
        timed = " " + time_to_accuracy(workloads["mnist_cnn"][0], args.target)
    print(f"ratio={min(ratios.values()):.3f} {pairs} threads={args.threads} gpu={gpu}{timed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
