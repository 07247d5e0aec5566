"""Pure functions over the trials DataFrame of `hpsearch.query.trials`: what the dashboard's
views show, computed without MLflow, Dash or a browser, so each can be tested on a DataFrame."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from hpsearch.platform.tracking.tags import TRIAL_STATUSES

MAX_POINTS = 5000  # per trace: more is downsampled before it is sent to the browser
LOG_SPAN = 100.0  # a positive parameter spanning this factor or more is shown on a log axis


def parameter_columns(trials: pd.DataFrame) -> list[str]:
    """The `params.*` columns, in a stable order."""
    return sorted(column for column in trials.columns if column.startswith("params."))


def hashable_params(trials: pd.DataFrame) -> pd.DataFrame:
    """List-valued parameters (hidden_sizes: [256, 128]) as their text, so they group and compare."""
    frame = trials.copy()
    for column in parameter_columns(frame):
        if frame[column].map(lambda value: isinstance(value, (list, dict))).any():
            frame[column] = frame[column].map(lambda value: str(value) if isinstance(value, (list, dict)) else value)
    return frame


def trials_with_result(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The trials with a finite `best_<metric>`, running or ended: the ones a view of results can show.

    A trial that has not finished an epoch has no value (and before any has, the column is missing
    altogether); a trial that diverged in its first epoch has NaN.
    """
    column = f"best_{metric}"
    if column not in trials:
        return trials.iloc[0:0].assign(**{column: pd.Series(dtype=float)})
    values = pd.to_numeric(trials[column], errors="coerce").astype(float)
    return trials[np.isfinite(values.to_numpy())]


def no_results_reason(trials: pd.DataFrame, metric: str) -> str:
    """Why no trial has a `best_<metric>` to show, in a few words, for an empty figure or card."""
    if trials.empty:
        return "no trials yet"
    counts = trials["status"].value_counts()
    order = [*TRIAL_STATUSES, *sorted(set(counts.index) - set(TRIAL_STATUSES))]
    shown = ", ".join(f"{counts[status]} {status.replace('_', ' ')}" for status in order if status in counts)
    if "running" in counts:
        return f"no trial has reported {metric} yet ({shown})"
    return f"no trial reported {metric} ({shown})"


def is_log_scaled(values: pd.Series) -> bool:
    """True for positive numbers spread over two decades or more (learning rates, weight decays).

    Spread, not just spanning: a uniform draw from [0, 0.5] may hold 0.001 too, but nine in ten of
    its values lie in the top decade, where a log-uniform draw over four decades has one in four.
    """
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty or (numbers <= 0).any() or len(numbers) != values.dropna().size:
        return False
    top = numbers.max()
    if top / numbers.min() < LOG_SPAN:
        return False
    return len(numbers) < 5 or (numbers < top / 10).mean() >= 0.25


def best_so_far(trials: pd.DataFrame, *, metric: str, mode: str, by: str = "trial") -> pd.DataFrame:
    """The running best of `best_<metric>` as trials finish: by trial number or by wall time.

    Columns: trial, x (trial rank, or seconds since the search's first start), value, best,
    stopped_early.
    """
    if by not in ("trial", "time"):
        raise ValueError(f"by: {by!r} is not one of ['trial', 'time']")
    column = f"best_{metric}"
    frame = trials_with_result(trials, metric)
    if frame.empty:
        return pd.DataFrame(columns=["trial", "x", "value", "best", "stopped_early"])
    if by == "time":
        ends = pd.to_datetime(frame["end_time"], utc=True)
        frame = frame.assign(x=(ends - pd.to_datetime(trials["start_time"], utc=True).min()).dt.total_seconds())
        frame = frame.dropna(subset=["x"]).sort_values("x")
    else:
        frame = frame.sort_values("trial").assign(x=lambda f: np.arange(1, len(f) + 1))
    values = frame[column].astype(float)
    best = values.cummax() if mode == "max" else values.cummin()
    return pd.DataFrame({"trial": frame["trial"].to_numpy(), "x": frame["x"].to_numpy(), "value": values.to_numpy(),
                         "best": best.to_numpy(), "stopped_early": (frame["status"] == "stopped_early").to_numpy()})


def differing_settings(trials: pd.DataFrame, selected: Sequence[str]) -> pd.DataFrame:
    """Side by side parameters of 2 to 5 selected trials, one row per parameter, `differs` marked."""
    if not 2 <= len(selected) <= 5:
        raise ValueError(f"compare 2 to 5 trials, got {len(selected)}")
    chosen = trials.set_index("trial").loc[list(selected)]
    table = chosen[parameter_columns(trials)].T
    table.index = [name.removeprefix("params.") for name in table.index]
    table = table.dropna(how="all")
    shown = table.map(lambda value: "-" if _missing(value) else str(value))
    return shown.assign(differs=shown.nunique(axis=1) > 1)


def parameter_importance(trials: pd.DataFrame, *, metric: str, mode: str, seed: int = 0,
                         column: str | None = None) -> pd.Series:
    """Importance of each parameter for `best_<metric>` (or another objective's `column`, such as
    latency_ms), by Optuna's default evaluator: PED-ANOVA in Optuna 5, which reads which values the
    best trials share (far faster than fANOVA's forests on large searches).

    Optuna evaluates the parameters every finished trial has: in a conditional space those are
    the ones outside the branches (a branch's parameters are judged through its choice).
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    column = column or f"best_{metric}"
    finished = trials_with_result(trials, metric)
    if column not in finished:
        return pd.Series(dtype=float)
    finished = finished[finished[column].notna()]
    params = [c for c in parameter_columns(finished) if finished[c].notna().all() and finished[c].nunique() > 1]
    if len(finished) < 2 or not params:
        return pd.Series(dtype=float)
    distributions = {}
    for name in params:
        numbers = pd.to_numeric(finished[name], errors="coerce")
        if numbers.notna().all():
            distributions[name] = FloatDistribution(float(numbers.min()), float(numbers.max()),
                                                    log=is_log_scaled(finished[name]))
        else:
            distributions[name] = CategoricalDistribution(sorted({str(v) for v in finished[name]}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created" for every look
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in finished.iterrows():
        values = {name: (float(row[name]) if isinstance(dist, FloatDistribution) else str(row[name]))
                  for name, dist in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions,
                                                  value=float(row[column])))
    with warnings.catch_warnings():  # PED-ANOVA on a handful of trials says so; the figure shows what it found
        warnings.simplefilter("ignore")
        importance = optuna.importance.get_param_importances(study)  # Optuna 5's default: PED-ANOVA
    return pd.Series({name.removeprefix("params."): value for name, value in importance.items()}, name="importance")


def downsample(frame: pd.DataFrame, *, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most `max_points` rows, evenly spaced, always keeping the first and the last."""
    if len(frame) <= max_points:
        return frame
    positions = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[positions]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
