"""Augmentation presets applied to uint8 tensor batches."""
from __future__ import annotations

from hpsearch.trainables.config import AUGMENTATIONS


@AUGMENTATIONS.register("none")
def no_augmentation(*, input_shape, dataset: str):
    return None
