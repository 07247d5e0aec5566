"""The training loop on real data: learning, determinism, resuming from a saved state, stopping."""
from __future__ import annotations

import io
import math

import pytest
import torch

from hpsearch.trainables import EPOCH_METRICS, TrainConfig, TrainingSession, is_diverged, load_dataset, train
from tests.conftest import shared_mnist_root

torch.set_num_threads(1)

# The metrics that depend only on the config and seed (not on the wall clock).
DETERMINISTIC_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
# Small and quick: about 0.05 s an epoch on digits on one CPU thread.
QUICK = {"channels": 8, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _never_stop(metrics: dict[str, float]) -> None:
    return None


def _deterministic(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: metrics[key] for key in DETERMINISTIC_METRICS} for metrics in history]


def test_cnn_learns_digits(digits) -> None:
    config = TrainConfig(model="cnn", lr=0.01, epochs=5, seed=0)
    history = train(config, _never_stop, data=digits)

    assert len(history) == config.epochs
    assert history[-1]["val_accuracy"] > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_every_epoch_reports_every_metric(digits) -> None:
    reported: list[dict[str, float]] = []
    history = train(TrainConfig(epochs=2, **QUICK), reported.append, data=digits)

    assert reported == history
    for metrics in history:
        assert set(metrics) == {*EPOCH_METRICS, "peak_memory_mb"}  # and the peak memory of training so far
        assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())
        assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["train_accuracy"] <= 1.0
        assert metrics["lr"] == 0.01
        assert metrics["epoch_seconds"] > 0 and metrics["images_per_second"] > 0


@pytest.mark.parametrize("model", ["cnn", "mlp", "lenet5"])
def test_same_config_and_seed_give_identical_metrics_on_cpu(model: str, digits) -> None:
    config = TrainConfig(model=model, epochs=2, seed=5, dropout=0.2, **QUICK)
    first = train(config, _never_stop, data=digits)
    second = train(config, _never_stop, data=digits)
    assert _deterministic(first) == _deterministic(second)


def test_different_seed_gives_different_metrics(digits) -> None:
    first = train(TrainConfig(epochs=1, seed=0, **QUICK), _never_stop, data=digits)
    second = train(TrainConfig(epochs=1, seed=1, **QUICK), _never_stop, data=digits)
    assert first[0]["train_loss"] != second[0]["train_loss"]


def _save_and_load(state: dict) -> dict:
    """Through bytes, as a checkpoint on disk would go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def _resumed_history(config: TrainConfig, data, *, interrupt_after: int) -> list[dict[str, float]]:
    interrupted = TrainingSession(config, data=data)
    for _ in range(interrupt_after):
        interrupted.run_epoch()
    state = _save_and_load(interrupted.state_dict())
    del interrupted

    resumed = TrainingSession(config, data=data)
    resumed.load_state_dict(state)
    assert resumed.epoch == interrupt_after and not resumed.finished
    while not resumed.finished:
        resumed.run_epoch()
    return resumed.history


def _uninterrupted_history(config: TrainConfig, data) -> list[dict[str, float]]:
    session = TrainingSession(config, data=data)
    while not session.finished:
        session.run_epoch()
    return session.history


@pytest.mark.parametrize("overrides", [
    {"optimizer": "adam"},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"optimizer": "adam", "batchnorm": True},
], ids=["adam", "sgd-momentum", "adam-batchnorm"])
def test_resuming_from_state_dict_matches_an_uninterrupted_run(overrides: dict, digits) -> None:
    config = TrainConfig(epochs=3, seed=2, **{**QUICK, **overrides})
    uninterrupted = _uninterrupted_history(config, digits)
    resumed = _resumed_history(config, digits, interrupt_after=2)

    assert len(resumed) == len(uninterrupted) == 3
    assert _deterministic(resumed) == _deterministic(uninterrupted)


def test_resuming_with_dropout_matches_an_uninterrupted_run(digits) -> None:
    config = TrainConfig(epochs=3, seed=2, dropout=0.3, **QUICK)
    uninterrupted = _uninterrupted_history(config, digits)
    resumed = _resumed_history(config, digits, interrupt_after=2)
    assert _deterministic(resumed) == _deterministic(uninterrupted)


def test_loaded_state_restores_the_model_weights(digits) -> None:
    config = TrainConfig(epochs=2, **QUICK)
    trained = TrainingSession(config, data=digits)
    trained.run_epoch()
    fresh = TrainingSession(config, data=digits)
    assert fresh.evaluate(digits.val) != trained.evaluate(digits.val)

    fresh.load_state_dict(_save_and_load(trained.state_dict()))
    assert fresh.evaluate(digits.val) == trained.evaluate(digits.val)
    assert fresh.history == trained.history


@pytest.mark.parametrize("stop_after", [1, 2])
def test_report_returning_true_stops_training(stop_after: int, digits) -> None:
    calls: list[dict[str, float]] = []

    def report(metrics: dict[str, float]) -> bool:
        calls.append(metrics)
        return len(calls) >= stop_after

    history = train(TrainConfig(epochs=5, **QUICK), report, data=digits)
    assert len(calls) == stop_after
    assert len(history) == stop_after


def test_report_returning_none_or_false_runs_every_epoch(digits) -> None:
    answers = iter([None, False, None])
    history = train(TrainConfig(epochs=3, **QUICK), lambda metrics: next(answers), data=digits)
    assert len(history) == 3


def test_huge_sgd_learning_rate_diverges_and_stops_early(digits) -> None:
    # lenet5 at lr=10 with momentum 0.99 overflows to a non-finite loss within the first epoch.
    config = TrainConfig(model="lenet5", optimizer="sgd", lr=10.0, momentum=0.99, epochs=6)
    reported: list[dict[str, float]] = []
    history = train(config, reported.append, data=digits)

    assert len(history) < config.epochs
    assert is_diverged(history[-1])
    assert not (math.isfinite(history[-1]["train_loss"]) and math.isfinite(history[-1]["val_loss"]))
    assert reported == history  # the diverged epoch is still reported before stopping
    assert not any(is_diverged(metrics) for metrics in history[:-1])


@pytest.mark.parametrize(("train_loss", "val_loss", "diverged"), [
    (0.5, 0.7, False),
    (1e30, 1e30, False),
    (math.nan, 0.7, True),
    (0.5, math.inf, True),
    (-math.inf, 0.7, True),
])
def test_is_diverged(train_loss: float, val_loss: float, diverged: bool) -> None:
    assert is_diverged({"train_loss": train_loss, "val_loss": val_loss}) is diverged


def test_lenet5_learns_the_real_mnist_mini_split() -> None:
    data = load_dataset("mnist", root=str(shared_mnist_root()))
    history = train(TrainConfig(model="lenet5", epochs=2), _never_stop, data=data)
    assert history[-1]["val_accuracy"] > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_cpu_closely(digits) -> None:
    config = TrainConfig(epochs=3, **QUICK)
    cpu = train(config, _never_stop, data=digits, device="cpu")
    cuda = train(config, _never_stop, data=digits, device="cuda")
    assert all(math.isfinite(metrics["val_loss"]) for metrics in cuda)
    # Different kernels round differently; the learning must still be the same to within a few percent.
    assert cuda[-1]["val_accuracy"] == pytest.approx(cpu[-1]["val_accuracy"], abs=0.05)


def test_a_test_evaluation_builds_no_optimizer_and_so_never_imports_torch_dynamo() -> None:
    """A search's driver evaluates its best trial on the test split: an optimizer would cost it about
    a second of importing torch._dynamo (torch.optim's methods load it on first use)."""
    import subprocess
    import sys

    code = """
import io, sys, torch
from hpsearch.trainables import TrainConfig, build_model, load_dataset
from hpsearch.trainables.evaluate import evaluate_on_test
data = load_dataset("digits")
config = TrainConfig(model="mlp", hidden_sizes=[16])
weights = io.BytesIO()
torch.save(build_model(config, input_shape=data.input_shape, num_classes=10).state_dict(), weights)
evaluation = evaluate_on_test(config, weights.getvalue(), data=data)
print(sum(map(sum, evaluation.confusion)) == len(data.test), "torch._dynamo" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stdout + done.stderr
