"""A search's wall-clock budget (`search.time_budget`): trials start until it is spent.

Tune stops a search by cutting its running trials short without telling the callbacks they ended,
as on Ctrl-C, when such trials wait, marked interrupted, for `hpsearch resume`. A budget that runs
out is the end the user asked for, not an interruption: the trials it cut short end as those ASHA
stops do (stopped early, their runs closed, their best checkpoints kept).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray import tune


class TimeBudget(tune.Stopper, tune.Callback):
    """The stopper that spends the budget and the callback that ends what it cut short, in one.

    Give it to Tune as a stopper and as the first callback, before the tracker (which writes what it
    was told when the experiment ends); `enders` are the callbacks told of each trial it ends.
    """

    def __init__(self, budget_s: float, *, enders: Sequence[tune.Callback]) -> None:
        self.budget_s = budget_s
        self.left_s = budget_s
        self.enders = list(enders)
        self._running: set[str] = set()
        self._last_check: float | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:  # restored with the experiment: what was left
        self.__dict__.update(state)
        self._last_check = None

    @property
    def spent(self) -> bool:
        return self.left_s <= 0

    # ---- as a stopper, asked on every step of Tune's loop
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        now = time.monotonic()
        if self._last_check is not None:
            self.left_s -= now - self._last_check
        self._last_check = now
        return self.spent

    # ---- as a callback
    def setup(self, **info) -> None:
        print(f"time budget {format_duration(self.left_s)}: trials start until it is spent", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._running.discard(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._running.discard(trial.trial_id)

    def on_experiment_end(self, trials, **info) -> None:
        if not self.spent:  # stopped before the budget ran out (Ctrl-C): left for `hpsearch resume`
            return
        cut = [trial for trial in trials if trial.trial_id in self._running]
        print(f"time budget of {format_duration(self.budget_s)} spent: no more trials start"
              + (f"; {len(cut)} running stopped early" if cut else ""), flush=True)
        for trial in cut:
            for ender in self.enders:
                ender.on_trial_complete(iteration=0, trials=trials, trial=trial)
        self._running.clear()


def format_duration(seconds: float) -> str:
    """2h, 1h30m, 90s, 2.5s: as a spec would write it."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
