"""Trials shorter than a trial process's start-up keep both of Tune's concurrent actors busy.

With `reuse_actors`, Tune hands a finished trial's actor to the next trial, and when that trial
already had an actor of its own starting (with its resources granted), Tune kills the one starting.
A new trial process takes seconds to start (it imports torch and Ray Tune): if a trial is shorter
than that, as ASHA's first rungs and small datasets make them, the one live actor always frees up
first, every actor started beside it is killed before its first trial, and a search with
`max_concurrent: 2` runs one trial at a time while start-ups it throws away take the other core.

Here a trial whose own actor has its resources and is starting waits for it, and the free actor
goes to a trial that has none. A trial whose actor still waits for resources takes a free actor as
before: that is how a search with more concurrent trials than slots gets going.
"""
from __future__ import annotations


def keep_starting_actors() -> None:
    """Patch TuneController._maybe_reuse_cached_actor once; a Ray without it is left as it is."""
    from ray.tune.execution import tune_controller

    controller = tune_controller.TuneController
    original = getattr(controller, "_maybe_reuse_cached_actor", None)
    if original is None or getattr(original, "_hpsearch", False):
        return

    def _maybe_reuse_cached_actor(self, trial) -> bool:
        own = self._trial_to_actor.get(trial)
        starting = getattr(self._actor_manager, "_live_actors_to_ray_actors_resources", {})
        if own is not None and trial not in self._resetting_trials and own in starting:
            return False  # its own actor has resources and is on its way
        return original(self, trial)

    _maybe_reuse_cached_actor._hpsearch = True
    controller._maybe_reuse_cached_actor = _maybe_reuse_cached_actor
