"""Optimizers and learning-rate schedules: every registered one built from a real TrainConfig, stepped,
its learning-rate trajectory checked against its definition, saved and resumed."""
from __future__ import annotations

import io
import math
import re
import warnings

import pytest
import torch
from torch import nn

from hpsearch.trainables import OPTIMIZERS, SCHEDULES, TrainConfig, build_optimizer, list_optimizers
from hpsearch.trainables.optim import effective_lr
from hpsearch.trainables.schedules import LrSchedule, build_schedule, list_schedules

torch.set_num_threads(1)

STEPS_PER_EPOCH = 4
VAL_LOSSES = [1.0, 0.5, 0.6, 0.7, 0.4, 0.45, 0.3, 0.2]  # improves, stalls twice, improves...


def _schedule(steps_per_epoch: int = STEPS_PER_EPOCH, **settings) -> tuple[torch.optim.Optimizer, LrSchedule]:
    config = TrainConfig(**{"optimizer": "sgd", "lr": 0.1, "epochs": 5, **settings})
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(2))])
    return optimizer, build_schedule(config, optimizer, steps_per_epoch=steps_per_epoch)


def _run(optimizer: torch.optim.Optimizer, schedule: LrSchedule, *, epochs: range,
         steps_per_epoch: int = STEPS_PER_EPOCH) -> list[list[float]]:
    """Drive the schedule as the training loop does; the lr each batch trained with, per epoch."""
    trajectory = []
    for epoch in epochs:
        lrs = []
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch(VAL_LOSSES[epoch])
        trajectory.append(lrs)
    return trajectory


def _flat(trajectory: list[list[float]]) -> list[float]:
    return [lr for epoch in trajectory for lr in epoch]


# Optimizers

def test_the_documented_optimizers_are_registered() -> None:
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= set(list_optimizers())


@pytest.mark.parametrize("name", list_optimizers())
def test_every_optimizer_reduces_a_simple_loss(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    inputs = torch.randn(32, 4)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    optimizer = build_optimizer(TrainConfig(optimizer=name, lr=0.05, momentum=0.5), model.parameters())

    def loss() -> torch.Tensor:
        return nn.functional.mse_loss(model(inputs), targets)

    initial = float(loss().detach())
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()

    assert float(loss().detach()) < 0.9 * initial


@pytest.mark.parametrize("name, expected", [
    ("sgd", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"weight_decay": 0.01}),
    ("adamw", {"weight_decay": 0.01}),
    ("rmsprop", {"momentum": 0.8, "weight_decay": 0.01}),
    ("adagrad", {"weight_decay": 0.01}),
])
def test_optimizers_take_their_settings_from_the_config(name: str, expected: dict) -> None:
    config = TrainConfig(optimizer=name, lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01)
    group = build_optimizer(config, [nn.Parameter(torch.zeros(1))]).param_groups[0]

    assert {key: group[key] for key in expected} == expected
    assert group["lr"] == 0.02


def test_sgd_drops_nesterov_without_momentum() -> None:
    config = TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)
    assert build_optimizer(config, [nn.Parameter(torch.zeros(1))]).param_groups[0]["nesterov"] is False


@pytest.mark.parametrize("settings, expected", [
    ({"lr": 0.1, "batch_size": 512, "lr_scaling": True}, 0.2),
    ({"lr": 0.1, "batch_size": 64, "lr_scaling": True}, 0.025),
    ({"lr": 0.1, "batch_size": 256, "lr_scaling": True}, 0.1),
    ({"lr": 0.1, "batch_size": 512, "lr_scaling": False}, 0.1),
])
def test_effective_lr_scales_per_256_examples_only_when_asked(settings: dict, expected: float) -> None:
    config = TrainConfig(**settings)

    assert effective_lr(config) == pytest.approx(expected)
    assert build_optimizer(config, [nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"] == pytest.approx(expected)


# Schedules

def test_the_documented_schedules_are_registered() -> None:
    assert {"none", "step", "cosine", "onecycle", "plateau"} <= set(list_schedules())


def test_none_keeps_the_lr_constant() -> None:
    optimizer, schedule = _schedule(lr_schedule="none")
    assert _flat(_run(optimizer, schedule, epochs=range(5))) == [0.1] * 5 * STEPS_PER_EPOCH


def test_step_multiplies_by_gamma_every_step_size_epochs() -> None:
    optimizer, schedule = _schedule(lr_schedule="step", step_size=2, gamma=0.5)
    trajectory = _run(optimizer, schedule, epochs=range(5))

    for epoch, lrs in enumerate(trajectory):
        assert lrs == pytest.approx([0.1 * 0.5 ** (epoch // 2)] * STEPS_PER_EPOCH), f"epoch {epoch}"


def test_cosine_anneals_per_batch_to_zero() -> None:
    optimizer, schedule = _schedule(lr_schedule="cosine", epochs=4)
    lrs = _flat(_run(optimizer, schedule, epochs=range(4)))
    total = 4 * STEPS_PER_EPOCH

    assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * step / total)) / 2 for step in range(total)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_onecycle_peaks_at_the_effective_lr_and_ends_near_zero() -> None:
    settings = {"lr_schedule": "onecycle", "lr": 0.1, "batch_size": 512, "lr_scaling": True, "epochs": 5}
    optimizer, schedule = _schedule(**settings)
    lrs = _flat(_run(optimizer, schedule, epochs=range(5)))
    max_lr = effective_lr(TrainConfig(**settings))

    assert max(lrs) == pytest.approx(max_lr)
    assert lrs[0] == pytest.approx(max_lr / 25)  # torch's default div_factor
    peak = lrs.index(max(lrs))
    assert peak == round(0.3 * len(lrs)) - 1  # torch's default pct_start
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] < max_lr / 1000


def test_onecycle_keeps_the_configured_momentum() -> None:
    optimizer, schedule = _schedule(lr_schedule="onecycle", momentum=0.3)
    _run(optimizer, schedule, epochs=range(2))
    assert optimizer.param_groups[0]["momentum"] == 0.3


def test_plateau_decays_once_val_loss_stops_improving_past_patience() -> None:
    optimizer, schedule = _schedule(lr_schedule="plateau", gamma=0.5, epochs=6)
    epoch_lrs = [lrs[0] for lrs in _run(optimizer, schedule, epochs=range(6))]

    # Val losses 1.0, 0.5, 0.6, 0.7, 0.4: one epoch without improvement is tolerated (patience 1),
    # the second in a row halves the lr for the epochs after it.
    assert epoch_lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


@pytest.mark.parametrize("lr_schedule", ["none", "step", "cosine", "plateau"])
def test_warmup_rises_linearly_from_a_tenth_of_the_lr(lr_schedule: str) -> None:
    optimizer, schedule = _schedule(lr_schedule=lr_schedule, warmup_epochs=1.5, step_size=3, epochs=4)
    lrs = _flat(_run(optimizer, schedule, epochs=range(4)))
    warmup_steps = 6  # 1.5 epochs of 4 batches

    assert lrs[:warmup_steps + 1] == pytest.approx([0.1 * (0.1 + 0.9 * step / warmup_steps)
                                                    for step in range(warmup_steps + 1)])
    if lr_schedule == "cosine":  # anneals over the batches left after warmup
        remaining = 4 * STEPS_PER_EPOCH - warmup_steps
        assert lrs[warmup_steps:] == pytest.approx([0.1 * (1 + math.cos(math.pi * step / remaining)) / 2
                                                    for step in range(remaining)])
    elif lr_schedule == "step":  # still decays at the end of epoch step_size, counted from the start
        assert lrs[warmup_steps:] == pytest.approx([0.1] * 6 + [0.01] * 4)
    else:  # plateau's first decay comes at the end of epoch 4, after these
        assert lrs[warmup_steps:] == pytest.approx([0.1] * 10)


def test_fractional_warmup_rounds_to_whole_batches() -> None:
    optimizer, schedule = _schedule(lr_schedule="none", warmup_epochs=0.25, steps_per_epoch=2)
    lrs = _flat(_run(optimizer, schedule, epochs=range(2), steps_per_epoch=2))
    assert lrs == pytest.approx([0.01, 0.1, 0.1, 0.1])  # a quarter of 2 batches: at least one


def _resume_cases() -> list:
    cases = []
    for name in list_schedules():
        cases.append(pytest.param({"lr_schedule": name}, id=name))
        if name != "onecycle":  # 3.5 epochs: the state is saved mid-warmup
            cases.append(pytest.param({"lr_schedule": name, "warmup_epochs": 3.5}, id=f"{name}+warmup"))
    return cases


@pytest.mark.parametrize("load_optimizer_state", [True, False], ids=["with-optimizer-state", "schedule-only"])
@pytest.mark.parametrize("settings", _resume_cases())
def test_a_resumed_schedule_continues_the_same_trajectory(settings: dict, load_optimizer_state: bool) -> None:
    settings = {"step_size": 2, "gamma": 0.5, "epochs": 8, **settings}
    optimizer, schedule = _schedule(**settings)
    uninterrupted = _run(optimizer, schedule, epochs=range(8))

    optimizer, schedule = _schedule(**settings)
    first = _run(optimizer, schedule, epochs=range(3))
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain data: loads without unpickling code

    optimizer, schedule = _schedule(**settings)
    if load_optimizer_state:
        optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" either
        rest = _run(optimizer, schedule, epochs=range(3, 8))

    assert first + rest == uninterrupted


def test_loading_another_schedules_state_names_both() -> None:
    _, cosine = _schedule(lr_schedule="cosine")
    _, step = _schedule(lr_schedule="step")
    with pytest.raises(ValueError, match="'cosine' does not match this one \\('step'\\)"):
        step.load_state_dict(cosine.state_dict())


# Bad input

def _build_optimizer(config: TrainConfig) -> object:
    return build_optimizer(config, [nn.Parameter(torch.zeros(1))])


def _build_schedule(config: TrainConfig) -> object:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    return build_schedule(config, optimizer, steps_per_epoch=STEPS_PER_EPOCH)


@pytest.mark.parametrize("field, registry, build", [("optimizer", OPTIMIZERS, _build_optimizer),
                                                    ("lr_schedule", SCHEDULES, _build_schedule)])
def test_unknown_names_are_rejected_with_the_known_ones(field: str, registry, build) -> None:
    message = f"'cosin'.*{re.escape(str(registry.names()))}"
    with pytest.raises(ValueError, match=f"(?s){field}.*{message}"):
        TrainConfig(**{field: "cosin"})

    # Past validation (a config copied without it), the builders still name the known ones.
    with pytest.raises(ValueError, match=message):
        build(TrainConfig().model_copy(update={field: "cosin"}))


@pytest.mark.parametrize("settings, steps_per_epoch, match", [
    ({"lr_schedule": "onecycle", "warmup_epochs": 1.0}, 4, "warmup_epochs: 1.0 .*lr_schedule 'onecycle'"),
    ({"lr_schedule": "cosine", "warmup_epochs": 5.0, "epochs": 5}, 4,
     r"warmup_epochs: 5.0 must be less than epochs \(5\)"),
    ({"lr_schedule": "plateau", "gamma": 1.0}, 4, "gamma: 1.0 .*lr_schedule 'plateau'"),
    ({"lr_schedule": "step"}, 0, "steps_per_epoch must be at least 1, got 0"),
])
def test_impossible_schedules_are_rejected(settings: dict, steps_per_epoch: int, match: str) -> None:
    # A spec is refused when it is parsed; a config built without validation still fails in the builder.
    if steps_per_epoch:
        with pytest.raises(ValueError, match=r"warmup|gamma"):
            TrainConfig(**settings)
    config = TrainConfig.model_construct(**{**TrainConfig().model_dump(), **settings})
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match=match):
        build_schedule(config, optimizer, steps_per_epoch=steps_per_epoch)
