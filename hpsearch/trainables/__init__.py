"""What a trial runs: models, optimizers, datasets and the training loop. Knows nothing of Ray or MLflow."""
from __future__ import annotations

from hpsearch.trainables.config import (AUGMENTATIONS, DATASETS, EPOCH_METRICS, INITIALIZATIONS, MODELS, OPTIMIZERS,
                                        SCHEDULES, TrainConfig)
from hpsearch.trainables import augment, init, schedules  # noqa: F401  (registrations)
from hpsearch.trainables.data import DatasetSplits, Split, list_datasets, load_dataset
from hpsearch.trainables.models import build_model, list_models
from hpsearch.trainables.optim import build_optimizer, effective_lr, list_optimizers
from hpsearch.trainables.schedules import LrSchedule, build_schedule
from hpsearch.trainables.train import Interrupted, ModelSession, TrainingSession, is_diverged, train

__all__ = [
    "AUGMENTATIONS", "INITIALIZATIONS", "SCHEDULES", "DATASETS", "EPOCH_METRICS", "MODELS", "OPTIMIZERS", "DatasetSplits", "Split", "TrainConfig",
    "Interrupted", "LrSchedule", "ModelSession", "TrainingSession", "build_model", "build_optimizer", "build_schedule", "effective_lr", "is_diverged", "list_datasets",
    "list_models", "list_optimizers", "load_dataset", "train",
]
