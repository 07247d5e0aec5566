"""What a model costs: trainable parameters, multiply-accumulates, size, latency and training memory.

Measured for every trial, once, on the trial's own device and threads: the figures a user weighs
against accuracy (`search.objectives`, `search.constraints`). Parameters, MACs and size are known
before the first epoch (`STATIC`), so a constraint on them can end a trial before it trains.

A trial that prunes (`prune_amount`) counts in `params` only the weights that remain nonzero: global
magnitude pruning of a share of the prunable weights removes exactly that many, so the count is known
before training. MACs, size and latency stay those of the dense model: unstructured sparsity leaves the
tensors their shape, and dense kernels run no faster on zeros.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
from typing import Any, Callable

import torch

STATIC = ("params", "macs", "size_mb")  # known from the model alone, before training
MEASURED = ("latency_ms", "latency_batch_ms", "peak_memory_mb")  # measured on the trial's device
COSTS = STATIC + MEASURED
LATENCY_BATCH = 64  # images in the batch latency_batch_ms is measured on
_WARMUP = 3  # forward passes before timing: lazy initialization, allocator and caches settle
_REPEATS = (5, 50)  # timed forward passes: at least, at most
_TIMING_BUDGET_S = 0.25  # per batch size: fewer repeats beyond it (a large model on a CPU)


def static_costs(model: torch.nn.Module, input_shape: tuple[int, ...], *,
                 prune_amount: float = 0.0) -> dict[str, float]:
    """params (trainable, less the `prune_amount` share of the prunable weights that pruning will zero),
    macs (of one image's forward pass, torch's flop counter: FLOPs / 2; dense) and size_mb (the state
    dict as torch.save writes it; dense)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return {"params": _trainable(model, prune_amount), "macs": float(count_macs(model, input_shape)),
            "size_mb": buffer.tell() / 2**20}


def shape_costs(model: torch.nn.Module, input_shape: tuple[int, ...], *,
                prune_amount: float = 0.0) -> dict[str, float]:
    """params, macs and size_mb as `static_costs` counts them, from shapes alone: for a model built on
    torch's meta device (no memory, no compute). size_mb is the tensors' bytes; the file torch.save
    writes is a few KB larger."""
    size = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values()
               if isinstance(tensor, torch.Tensor))
    return {"params": _trainable(model, prune_amount), "macs": float(count_macs(model, input_shape)),
            "size_mb": size / 2**20}


def _trainable(model: torch.nn.Module, prune_amount: float) -> float:
    """Trainable parameters, less the `prune_amount` share of the prunable weights pruning will zero."""
    from hpsearch.trainables.pruning import planned_pruned

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return float(params - planned_pruned(model, prune_amount) if prune_amount else params)


def count_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one image, in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    device = _device_of(model)
    with _eval(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    return counter.get_total_flops() // 2


def latency_ms(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch: int = 1,
               autocast: Callable[[], Any] | None = None) -> float:
    """Median wall time in milliseconds of one forward pass of `batch` images on the model's device,
    after warm-up, with this process's torch threads."""
    device = _device_of(model)
    images = torch.zeros(batch, *input_shape, device=device)
    times: list[float] = []
    with _eval(model), torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
        for _ in range(_WARMUP):
            model(images)
        _synchronize(device)
        deadline = time.perf_counter() + _TIMING_BUDGET_S
        while len(times) < _REPEATS[0] or (len(times) < _REPEATS[1] and time.perf_counter() < deadline):
            started = time.perf_counter()
            model(images)
            _synchronize(device)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measured_costs(model: torch.nn.Module, input_shape: tuple[int, ...], *, prune_amount: float = 0.0,
                   autocast: Callable[[], Any] | None = None) -> dict[str, float]:
    """Every cost but peak_memory_mb, which training reports as it goes (PeakMemory); `input_shape` is
    the one the model is evaluated at, and `prune_amount` the share of prunable weights it will prune.

    Measured once per architecture in a process (`architecture`): the trials of a search that share
    one, such as a grid over the learning rate, report the same costs, not each its own timing noise.
    """
    key = (architecture(model), tuple(input_shape), prune_amount, torch.get_num_threads(), autocast is not None)
    costs = _MEASURED.get(key)
    if costs is None:
        costs = _MEASURED[key] = {
            **static_costs(model, input_shape, prune_amount=prune_amount),
            "latency_ms": latency_ms(model, input_shape, autocast=autocast),
            "latency_batch_ms": latency_ms(model, input_shape, batch=LATENCY_BATCH, autocast=autocast)}
    return dict(costs)


_MEASURED: dict[tuple, dict[str, float]] = {}


def architecture(model: torch.nn.Module) -> tuple:
    """What a model's costs follow from: its class, its modules and their settings as they print, and
    the name, shape, dtype and device of each parameter and buffer; not the values of its weights."""
    kind = type(model)
    return (f"{kind.__module__}.{kind.__qualname__}", repr(model),
            tuple((name, tuple(tensor.shape), str(tensor.dtype), str(tensor.device), tensor.requires_grad)
                  for name, tensor in (*model.named_parameters(), *model.named_buffers())))


class PeakMemory:
    """Peak memory of training: the CUDA allocator's peak on a GPU; on a CPU the largest resident set
    of this process seen (sampled as training goes: `sample()`)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._peak = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        else:
            import psutil

            self._process = psutil.Process()
            self.sample()

    def sample(self) -> None:
        if self.device.type != "cuda":
            self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        self.sample()
        return self._peak / 2**20


@contextlib.contextmanager
def _eval(model: torch.nn.Module):
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
