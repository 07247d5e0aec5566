"""The live view of a running search and its closing summary."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray import tune

from hpsearch.search_spaces.objectives import ParetoFront, objective_keys

HEARTBEAT_S = 10.0  # seconds between status lines while nothing finishes


class LiveView(tune.Callback):
    """Prints one line when a trial ends and a status line every HEARTBEAT_S seconds.

    Counts are read off Tune's trial list each time, so a resumed search shows its whole state.
    """

    def __init__(self, *, metric: str, mode: str, planned: int, epochs: int,
                 backlog: Callable[[], tuple[int, float, str] | None] | None = None,
                 objectives: Sequence[tuple[str, str]] = ()) -> None:
        self.metric, self.mode, self.planned, self.epochs = metric, mode, planned, epochs
        self.backlog = backlog  # the tracking writer's: (writes waiting, seconds behind, error) while behind
        self.objectives = list(objectives)  # several: the status line counts the trials on the Pareto front
        self._objective_keys = objective_keys(self.objectives)
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.last_line = self.started
        self.best: tuple[float, str] | None = None
        self.front = ParetoFront([mode for _, mode in self.objectives])

    def __setstate__(self, state: dict[str, Any]) -> None:  # restored with the experiment
        self.__dict__.update(state)
        self._reset()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("infeasible"):
            return
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not math.isnan(value) and self._better(value):
            self.best = (value, _label(trial))

    # Tune calls these before it changes the trial's own status.
    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, trial_status(trial, self.epochs, ended=True), trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, "failed", trials, reason=error_line(trial))

    def on_step(self, iteration, trials, **info) -> None:
        if time.monotonic() - self.last_line >= HEARTBEAT_S:
            self._print(self.status_line(trials))

    def _ended(self, trial, status: str, trials, reason: str | None = None) -> None:
        last = trial.last_result or {}
        value = last.get(f"best_{self.metric}")
        if status == "diverged":
            reason = "loss became NaN or infinite"
        if status == "infeasible":
            when = "before training" if not last.get("epoch") else "in training"
            self._print(f"{_label(trial, long=True)} infeasible {when}: {last.get('broken', '')}   | "
                        f"{self.status_line(trials, prefix=False, ending=(trial, status))}")
            return
        shown = f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else (reason or "no result")
        if reason and status == "diverged":
            shown = f"{reason}; best {shown}"
        self._print(f"{_label(trial, long=True)} {status.replace('_', ' ')} after {last.get('epoch', 0)} "
                    f"epochs: {shown}   | {self.status_line(trials, prefix=False, ending=(trial, status))}")

    def status_line(self, trials, prefix: bool = True, ending: tuple[Any, str] | None = None) -> str:
        statuses = [ending[1] if ending and trial is ending[0] else trial_status(trial, self.epochs)
                    for trial in trials]
        done = sum(status not in ("running", "pending") for status in statuses)
        parts = [f"{done}/{self.planned} done", f"{statuses.count('running')} running"]
        parts += [f"{statuses.count(name)} {name.replace('_', ' ')}" for name in ("stopped_early", "diverged",
                                                                                  "infeasible", "failed")
                  if statuses.count(name)]
        if self.best:
            parts.append(f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})")
        if self.objectives:
            for trial, status in zip(trials, statuses):
                if status in ("completed", "stopped_early"):
                    self.front.add(trial.trial_id, self._objective_values(trial.last_result or {}))
            parts.append(f"front {len(self.front)} trial{'' if len(self.front) == 1 else 's'}")
        behind = self.backlog() if self.backlog is not None else None
        if behind:
            parts.append(f"tracking {behind[1]:.0f}s behind, {behind[0]} writes waiting (store out of reach: "
                         f"{behind[2][:80]})")
        line = " · ".join(parts)
        return f"[{time.monotonic() - self.started:6.1f}s] {line}" if prefix else line

    def _objective_values(self, result: dict[str, Any]) -> list[float] | None:
        """A trial's objectives as the front reads them (query.pareto): its best first objective, its costs."""
        values = [result.get(key) for key in self._objective_keys]
        if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in values):
            return None
        return [float(value) for value in values]

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _print(self, line: str) -> None:
        self.last_line = time.monotonic()
        print(line, file=sys.stdout, flush=True)


def trial_status(trial, epochs: int, *, ended: bool = False) -> str:
    """hpsearch's status of a Tune trial: pending, running, completed, stopped_early, diverged or failed."""
    if trial.status == "ERROR":
        return "failed"
    if trial.status != "TERMINATED" and not ended:
        return "running" if trial.status == "RUNNING" else "pending"
    last = trial.last_result or {}
    if last.get("infeasible"):
        return "infeasible"
    if last.get("diverged"):
        return "diverged"
    return "completed" if last.get("epoch", 0) >= epochs else "stopped_early"


def error_line(trial) -> str:
    """The last line of a failed trial's error: the exception and its message."""
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trial failed"


def format_config(config: dict[str, Any]) -> str:
    """`k=v, ...` for a line of output: floats to 4 significant digits (`hpsearch best` prints them exactly)."""
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in config.items())


def _short(trial_id: str) -> str:
    return trial_id.rsplit("_", 1)[-1]


def _label(trial, *, long: bool = False) -> str:
    """`trial 00003`; a seed replicate as `trial 00003 seed 2` (`replicate of trial 00003, seed 2`)."""
    replicate = (getattr(trial, "config", None) or {}).get("replicate")
    if replicate is None:
        return f"trial {_short(trial.trial_id)}"
    off = replicate.get("variant")
    if off is not None:  # an ablation run
        switched = "everything on" if off == "none" else f"{off} off"
        return (f"ablation of trial {replicate['of']}, {switched}, seed {replicate['seed']},"
                if long else f"trial {replicate['of']} {switched} seed {replicate['seed']}")
    if long:
        return f"replicate of trial {replicate['of']}, seed {replicate['seed']},"
    return f"trial {replicate['of']} seed {replicate['seed']}"


def summary_table(trials, *, metric: str, mode: str, limit: int = 10) -> str:
    """The best `limit` trials as a text table: id, status, best metric, epochs and parameters."""
    import pandas as pd

    if trials.empty:
        return "(no trials)"
    column = f"best_{metric}"
    if column not in trials:  # no trial reported anything
        trials = trials.assign(**{column: float("nan")})
    table = trials.sort_values(column, ascending=mode == "min", na_position="last").head(limit)
    params = [c for c in table.columns if c.startswith("params.")]
    # What each trial's model costs (trainables/cost.py), where its runs recorded it.
    costs = [name for name in ("params", "macs", "size_mb", "latency_ms", "latency_batch_ms", "peak_memory_mb")
             if name in table.columns and table[name].notna().any()]
    shown = table[["trial", "status", column, "epochs", *costs, *params]].rename(
        columns={c: c.removeprefix("params.") for c in params})
    for name in ("params", "macs"):
        if name in costs:
            shown[name] = shown[name].round().astype("Int64")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 24):
        return shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")

