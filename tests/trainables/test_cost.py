"""What a model costs, measured: parameters, MACs, size, latency and training memory."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset
from hpsearch.trainables.cost import COSTS, count_macs, latency_ms, measured_costs, shape_costs, static_costs


def test_static_costs_of_a_known_model() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    model[0].weight.requires_grad_(False)  # frozen: not counted as trainable
    costs = static_costs(model, (1, 8, 8))
    assert costs["params"] == 4 + (4 * 64 * 10 + 10)
    # A 3x3 convolution of 1 channel into 4 at every one of 64 pixels, then 256 x 10 multiply-adds.
    assert costs["macs"] == 4 * 9 * 64 + 256 * 10 == count_macs(model, (1, 8, 8))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert costs["size_mb"] == pytest.approx(buffer.tell() / 2**20)
    assert model[0].training  # measured in eval mode, left as it was


@pytest.mark.parametrize(("model", "shape", "settings"), [
    ("mlp", (1, 8, 8), {"hidden_sizes": [32, 16]}), ("cnn", (1, 28, 28), {"channels": 8, "depth": 2}),
    ("lenet5", (1, 28, 28), {"prune_amount": 0.5}), ("resnet18", (3, 32, 32), {}),
    ("torchvision.mobilenet_v3_small", (3, 32, 32), {})])
def test_costs_from_shapes_on_the_meta_device_are_the_measured_ones(model, shape, settings) -> None:
    from hpsearch.trainables.models import build_model

    config = TrainConfig(model=model, **settings)
    torch.manual_seed(0)
    measured = static_costs(build_model(config, input_shape=shape, num_classes=10), shape,
                            prune_amount=config.prune_amount)
    with torch.device("meta"):
        counted = shape_costs(build_model(config, input_shape=shape, num_classes=10), shape,
                              prune_amount=config.prune_amount)
    assert counted["params"] == measured["params"] and counted["macs"] == measured["macs"] > 0
    # The tensors' bytes; the file adds its names and pickle's framing.
    assert measured["size_mb"] - 0.1 < counted["size_mb"] <= measured["size_mb"]


def test_latency_is_positive_and_grows_with_the_model() -> None:
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    large = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 64, 10))
    small_ms = latency_ms(small, (1, 8, 8), batch=64)
    large_ms = latency_ms(large, (1, 8, 8), batch=64)
    assert 0 < small_ms < large_ms
    assert static_costs(small, (1, 8, 8))["macs"] < static_costs(large, (1, 8, 8))["macs"]


def test_every_epoch_reports_the_peak_memory_of_training() -> None:
    session = TrainingSession(TrainConfig(epochs=2, model="mlp", hidden_sizes=[32]), data=load_dataset("digits"))
    first, second = session.run_epoch(), session.run_epoch()
    assert 0 < first["peak_memory_mb"] <= second["peak_memory_mb"]  # a running peak
    costs = measured_costs(session.model, tuple(session.data.input_shape))
    assert set(costs) == set(COSTS) - {"peak_memory_mb"} and all(value > 0 for value in costs.values())


def test_costs_are_measured_once_per_architecture() -> None:
    def mlp(hidden: int, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 10))

    first = measured_costs(mlp(48, seed=0), (1, 8, 8))
    # Other weights, same architecture: the same figures, timing included (a second timing would differ).
    assert measured_costs(mlp(48, seed=1), (1, 8, 8)) == first
    wider = measured_costs(mlp(96, seed=0), (1, 8, 8))
    assert wider["params"] > first["params"] and wider != first
    # A setting that only shows in how the model prints is another architecture too.
    other_dropout = mlp(48, seed=0)
    other_dropout[3].p = 0.5
    assert measured_costs(other_dropout, (1, 8, 8))["latency_ms"] != first["latency_ms"]
    assert measured_costs(mlp(48, seed=0), (1, 8, 8), prune_amount=0.5)["params"] < first["params"]
