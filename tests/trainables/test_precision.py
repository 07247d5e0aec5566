"""Mixed precision and channels_last: chosen per device, and the loop trains under them (on CPU here)."""
from __future__ import annotations

import pytest
import torch

from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset
from hpsearch.trainables.precision import FULL, Precision, precision_for


def test_cpu_trains_in_float32():
    assert precision_for(torch.device("cpu")) == FULL


@pytest.mark.parametrize(("bf16", "dtype", "scaled"), [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_cuda_uses_mixed_precision_and_channels_last(bf16, dtype, scaled):
    precision = precision_for(torch.device("cuda"), bf16_supported=bf16)
    assert precision.autocast_dtype == dtype and precision.channels_last
    assert precision.needs_loss_scaling == scaled


@pytest.mark.parametrize("model", ["cnn", "resnet", "mlp"])
def test_the_loop_trains_under_bfloat16_autocast_and_channels_last(model):
    torch.set_num_threads(1)
    data = load_dataset("digits")
    config = TrainConfig(model=model, lr=0.01, epochs=4, batchnorm=True, channels=16)
    session = TrainingSession(config, data=data, precision=Precision(torch.bfloat16, channels_last=True))
    assert session._normalize(data.train.images[:4]).is_contiguous(memory_format=torch.channels_last)
    for _ in range(config.epochs):
        metrics = session.run_epoch()
    assert metrics["val_accuracy"] > 0.8
    restored = TrainingSession(config, data=data, precision=Precision(torch.bfloat16, channels_last=True))
    restored.load_state_dict(session.state_dict())
    assert restored.evaluate(data.val) == session.evaluate(data.val)
