"""The settings one trial trains with: every spec `train` key and `space` parameter is a field here."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpsearch._suggest import did_you_mean
from hpsearch.trainables.registry import Registry

MODELS: Registry = Registry("model")
OPTIMIZERS: Registry = Registry("optimizer")
DATASETS: Registry = Registry("dataset")
SCHEDULES: Registry = Registry("learning-rate schedule")
AUGMENTATIONS: Registry = Registry("augmentation")
INITIALIZATIONS: Registry = Registry("initialization")

# Names of the per-epoch metrics a trial reports; the first ones are what a search can optimize.
EPOCH_METRICS = ("val_accuracy", "val_loss", "val_accuracy_top5", "train_loss", "train_accuracy", "lr",
                 "epoch_seconds", "images_per_second")

MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 4, 4096  # train_image_size and eval_image_size, in pixels


class TrainConfig(BaseModel):
    """Everything `train()` needs besides the data. Defaults suit scikit-learn digits on a CPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Architecture
    model: str = "cnn"
    hidden_sizes: list[int] = Field(default=[128], min_length=1)  # mlp: units per hidden layer
    channels: int = Field(default=16, ge=1, le=1024)  # cnn: filters in the first conv block
    depth: int = Field(default=2, ge=1, le=8)  # cnn: conv blocks, each halving the image side
    kernel_size: int = Field(default=3, ge=1, le=7)  # cnn: odd sizes keep the image side
    width_growth: float = Field(default=2.0, ge=1.0, le=4.0)  # cnn: width multiplier per block
    pool: str = "max"  # cnn: max or avg pooling
    global_pool: bool = True  # cnn: global-average-pooling head (else flatten into the classifier)
    activation: str = "relu"  # mlp and cnn: relu, gelu, tanh or silu
    batchnorm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # drop probability before the classifier
    init: str = "default"  # weight initialization: default, kaiming, xavier, orthogonal
    # A zoo model (torchvision.NAME, timm.NAME) or a plug-in model (package.module:function)
    pretrained: bool = False  # zoo models: start from the published weights (read from disk, never downloaded)
    weights_path: str | None = None  # zoo models: the weights file; default: torch hub's cache
    freeze: str = "none"  # none, backbone (train the head alone), all_but_last_n (train the last n blocks)
    unfrozen_blocks: int = Field(default=2, ge=1, le=1000)  # freeze all_but_last_n: n, head included
    head_lr_multiplier: float = Field(default=1.0, gt=0.0, le=1000.0)  # the new head's lr over the body's
    model_args: dict[str, Any] = {}  # plug-in models: keyword arguments beyond those the space sets

    # Optimization
    optimizer: str = "adam"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)  # learning rate
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # sgd and rmsprop
    nesterov: bool = False  # sgd only
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)  # L2 penalty; decoupled under adamw
    batch_size: int = Field(default=64, ge=1, le=65536)  # examples per step
    lr_scaling: bool = False  # lr is per 256 examples, scaled linearly with batch_size
    lr_schedule: str = "none"  # none, step, cosine, onecycle, plateau
    warmup_epochs: float = Field(default=0.0, ge=0.0)  # linear warmup from lr/10, before the schedule
    step_size: int = Field(default=3, ge=1)  # step schedule: epochs between decays
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)  # step and plateau schedules: decay factor

    # Regularization
    l1: float = Field(default=0.0, ge=0.0, le=1.0)  # L1 penalty on weights, added to the loss
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    grad_clip: float = Field(default=0.0, ge=0.0)  # max gradient norm; 0 disables clipping
    augment: str = "none"  # none, light, strong, resized_crop, trivialaugment

    # The modern recipe (torchvision's references); every knob is off at its default
    random_erasing: float = Field(default=0.0, ge=0.0, le=1.0)  # probability an image has a random box erased
    mixup_alpha: float = Field(default=0.0, ge=0.0)  # MixUp's Beta(alpha, alpha); 0 disables
    cutmix_alpha: float = Field(default=0.0, ge=0.0)  # CutMix's Beta(alpha, alpha); 0 disables
    repeated_augment: int = Field(default=1, ge=1, le=32)  # copies of each sample per epoch, epoch length kept
    ema_decay: float = Field(default=0.0, ge=0.0, lt=1.0)  # EMA of the weights, per optimizer step; 0 disables
    train_image_size: int | None = None  # pixels per side the model trains at; 0 or None: the dataset's
    eval_image_size: int | None = None  # pixels per side it is evaluated at; 0 or None: the dataset's
    prune_amount: float = Field(default=0.0, ge=0.0, lt=1.0)  # share of conv and linear weights pruned; 0 disables
    prune_schedule: str = "one_shot"  # one_shot (after the last epoch) or gradual (over the last third)

    epochs: int = Field(default=5, ge=1, le=10000)  # passes over the training split
    seed: int = Field(default=0, ge=0)  # weights, batch order, dropout, augmentation

    @classmethod
    def from_settings(cls, train: dict[str, Any], params: dict[str, Any]) -> "TrainConfig":
        """A trial's config: the spec's `train` section under its sampled `params`; parameters that are
        no field here are a plug-in model's own, passed to its factory in `model_args`."""
        known = {name: value for name, value in params.items() if name in cls.model_fields}
        extra = {name: value for name, value in params.items() if name not in cls.model_fields}
        settings = {**train, **known}
        if extra:
            settings["model_args"] = {**dict(settings.get("model_args") or {}), **extra}
        return cls.model_validate(settings)

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from hpsearch.trainables.zoo import model_problem

        problem = model_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("optimizer", "lr_schedule", "augment", "init")
    @classmethod
    def _registered(cls, name: str, info) -> str:
        registry = _REGISTRY_OF[info.field_name]
        if name not in registry:
            raise ValueError(registry.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _schedule_fits(self) -> "TrainConfig":
        if self.lr_schedule == "onecycle" and self.warmup_epochs > 0:
            raise ValueError("lr_schedule 'onecycle' warms up by itself; set warmup_epochs to 0")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})")
        if self.lr_schedule == "plateau" and self.gamma == 1.0:
            raise ValueError("lr_schedule 'plateau' needs gamma < 1 (the factor it cuts the lr by)")
        return self

    @field_validator("train_image_size", "eval_image_size")
    @classmethod
    def _image_side(cls, side: int | None) -> int | None:
        if side is not None and side != 0 and not MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE:
            raise ValueError(f"{side!r} is not an image side: 0 (or null) keeps the dataset's size, else "
                             f"{MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} pixels")
        return side or None

    @field_validator("pool", "activation", "freeze", "prune_schedule")
    @classmethod
    def _one_of(cls, name: str, info) -> str:
        allowed = _ALLOWED[info.field_name]
        if name not in allowed:
            raise ValueError(f"{name!r} is not one of {list(allowed)}{did_you_mean(name, allowed)}")
        return name


_ALLOWED = {"pool": ("max", "avg"), "activation": ("relu", "gelu", "tanh", "silu"),
            "freeze": ("none", "backbone", "all_but_last_n"), "prune_schedule": ("one_shot", "gradual")}
_REGISTRY_OF = {"model": MODELS, "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES, "augment": AUGMENTATIONS,
                "init": INITIALIZATIONS}

