"""Final evaluation of a trained model on the test split: metrics and a confusion matrix."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Mapping

import torch

from hpsearch.trainables.config import TrainConfig
from hpsearch.trainables.data import DatasetSplits
from hpsearch.trainables.train import ModelSession


@dataclass(frozen=True)
class TestEvaluation:
    metrics: dict[str, float]  # test_loss, test_accuracy and, with more than 5 classes, test_accuracy_top5
    confusion: list[list[int]]  # rows: true class, columns: predicted class


def evaluate_on_test(config: TrainConfig, model_state: Mapping[str, torch.Tensor] | bytes, *,
                     data: DatasetSplits, device: str | torch.device = "cpu") -> TestEvaluation:
    """Load the weights into `config`'s model and evaluate it once on the test split."""
    if isinstance(model_state, bytes):
        model_state = torch.load(io.BytesIO(model_state), map_location=device, weights_only=True)
    session = ModelSession(config, data=data, device=device)
    session.model.load_state_dict(model_state)
    test = data.test
    metrics = {f"test_{name}": value for name, value in session.evaluate_metrics(test).items()}
    confusion = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, len(test), 2048):
            images = test.images[start:start + 2048].to(session.device)
            with session.precision.autocast(session.device):
                predicted = session.model(session._normalize(images)).argmax(1).cpu()
            truth = test.labels[start:start + 2048]
            confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    return TestEvaluation(metrics, confusion.tolist())
