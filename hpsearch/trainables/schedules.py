"""Learning-rate schedules, stepped once per epoch (placeholder registrations are filled in below)."""
from __future__ import annotations

from hpsearch.trainables.config import SCHEDULES


@SCHEDULES.register("none")
def constant(config, optimizer, *, steps_per_epoch: int):
    return None
