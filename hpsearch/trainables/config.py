"""The settings one trial trains with: every spec `train` key and `space` parameter is a field here."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpsearch.trainables.registry import Registry

MODELS: Registry = Registry("model")
OPTIMIZERS: Registry = Registry("optimizer")
DATASETS: Registry = Registry("dataset")

# Names of the per-epoch metrics a trial reports; the first ones are what a search can optimize.
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss", "train_accuracy", "lr", "epoch_seconds",
                 "images_per_second")


class TrainConfig(BaseModel):
    """Everything `train()` needs besides the data. Defaults suit scikit-learn digits on a CPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Architecture
    model: str = "cnn"
    hidden_sizes: list[int] = Field(default=[128], min_length=1)  # mlp: units per hidden layer
    channels: int = Field(default=16, ge=1, le=1024)  # cnn: filters in the first conv block
    depth: int = Field(default=2, ge=1, le=8)  # cnn: conv blocks, each halving the image side
    kernel_size: int = Field(default=3, ge=1, le=7)  # cnn: odd sizes keep the image side
    batchnorm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # drop probability before the classifier

    # Optimization
    optimizer: str = "adam"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)  # learning rate
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)  # L2 penalty, decoupled for none
    batch_size: int = Field(default=64, ge=1, le=65536)  # examples per step
    epochs: int = Field(default=5, ge=1, le=10000)  # passes over the training split
    seed: int = Field(default=0, ge=0)  # weights, batch order

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name not in MODELS:
            raise ValueError(MODELS.unknown_message(name))
        return name

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            raise ValueError(OPTIMIZERS.unknown_message(name))
        return name

