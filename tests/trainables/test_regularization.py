"""L1, label smoothing, gradient clipping and top-5 accuracy act as their definitions say."""
from __future__ import annotations

import pytest
import torch

from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset

QUICK = dict(model="mlp", hidden_sizes=[32], optimizer="sgd", lr=0.05, epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits")


def _trained(digits, **settings) -> TrainingSession:
    session = TrainingSession(TrainConfig(**{**QUICK, **settings}), data=digits)
    for _ in range(session.config.epochs):
        session.run_epoch()
    return session


def _weight_l1(session: TrainingSession) -> float:
    return sum(float(p.detach().abs().sum()) for p in session.model.parameters() if p.dim() > 1)


def test_l1_penalty_shrinks_weights(digits):
    assert _weight_l1(_trained(digits, l1=1e-2)) < 0.8 * _weight_l1(_trained(digits))


def test_label_smoothing_raises_the_training_loss_it_reports(digits):
    plain, smoothed = _trained(digits), _trained(digits, label_smoothing=0.2)
    assert smoothed.history[-1]["train_loss"] > plain.history[-1]["train_loss"] + 0.1


def test_gradient_clipping_limits_each_update(digits):
    def first_step_change(**settings) -> float:
        session = TrainingSession(TrainConfig(**{**QUICK, "momentum": 0.0, "lr": 1.0, **settings}), data=digits)
        before = [p.detach().clone() for p in session.model.parameters()]
        session.config = session.config.model_copy(update={"batch_size": len(digits.train)})  # one step
        session.run_epoch()
        return sum(float((p.detach() - b).norm() ** 2) for p, b in zip(session.model.parameters(), before)) ** 0.5

    assert first_step_change(grad_clip=0.01) == pytest.approx(0.01, rel=1e-3)  # lr 1 x norm 0.01
    assert first_step_change() > 0.05


def test_top5_accuracy_is_reported_and_bounds_top1(digits):
    metrics = _trained(digits).history[-1]
    assert metrics["val_accuracy"] <= metrics["val_accuracy_top5"] <= 1.0
