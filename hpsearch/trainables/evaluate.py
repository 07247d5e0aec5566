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
    # The checkpoint holds every weight: a zoo model is built without reading its pretrained file again.
    session = ModelSession(config.model_copy(update={"pretrained": False}), data=data, device=device)
    try:
        session.model.load_state_dict(model_state)
        confusion = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
        metrics = session.evaluate_metrics(data.test, confusion=confusion)
    finally:
        session.close()
    return TestEvaluation({f"test_{name}": value for name, value in metrics.items()}, confusion.tolist())
