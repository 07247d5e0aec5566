"""The search space in Ray Tune's and Optuna's terms: the one place a spec's space meets either.

The traps are here and tested: Ray's `randint` excludes its upper bound while hpsearch's `int` (and
Optuna's `suggest_int`) include it; Ray's OptunaSearch takes no grid; a conditional space is
suggested define-by-run, each branch's parameters named by their branch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray.tune.search.optuna import OptunaSearch

from hpsearch.search_spaces.space import (BRANCH_KEY, OPTUNA_CONFIG_KEY, OPTUNA_STARTUP_TRIALS, Param, SearchSpace,
                                          range_values)

# --------------------------------------------------------------------------- Ray Tune

def to_ray(space: SearchSpace, algorithm: str) -> dict[str, Any]:
    """Param space for Ray's BasicVariantGenerator: grid values become grid_search, the rest samplers."""
    from ray import tune

    config: dict[str, Any] = {}
    for param in space.params:
        enumerate_all = param.kind == "grid" or (algorithm == "grid" and param.kind == "choice")
        if param.kind == "constant":
            config[param.name] = param.values[0]
        elif param.kind in ("choice", "grid"):
            options = _ray_options(param, algorithm)
            config[param.name] = tune.grid_search(options) if enumerate_all else tune.choice(options)
        elif algorithm == "grid":
            config[param.name] = tune.grid_search(range_values(param))
        elif param.kind == "uniform":
            config[param.name] = tune.quniform(param.low, param.high, param.step) if param.step \
                else tune.uniform(param.low, param.high)
        elif param.kind == "loguniform":
            config[param.name] = tune.qloguniform(param.low, param.high, param.step) if param.step \
                else tune.loguniform(param.low, param.high)
        elif param.step:  # int with a step: Ray's qrandint includes its upper bound
            config[param.name] = tune.qrandint(param.low, param.high, param.step)
        else:  # int: Ray's randint excludes its upper bound
            config[param.name] = tune.randint(param.low, param.high + 1)
    return config


def _ray_options(param: Param, algorithm: str) -> list[Any]:
    if param.branches is None:
        return list(param.values)
    return [{BRANCH_KEY: value, **to_ray(branch, algorithm)} for value, branch in param.branches.items()]


# --------------------------------------------------------------------------- Optuna

def make_optuna_searcher(space: SearchSpace, *, metric: str, mode: str, seed: int,
                         objectives: list[tuple[str, str]] | None = None, constraints: list[str] | tuple = ()):
    """Ray's OptunaSearch over a define-by-run space with a seeded TPE sampler; with `objectives`,
    Optuna's multi-objective TPE, and with `constraints`, Optuna told each trial's violations."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=OPTUNA_STARTUP_TRIALS)
    if not objectives and not constraints:
        return BranchAwareOptunaSearch(space=DefineByRun(space), metric=metric, mode=mode, sampler=sampler)
    metrics = [name for name, _ in objectives] if objectives else metric
    modes = [direction for _, direction in objectives] if objectives else mode
    return ObjectiveOptunaSearch(space=DefineByRun(space), metric=metrics, mode=modes, sampler=sampler,
                                 first=metric, constraints=list(constraints))


@dataclass(frozen=True)
class DefineByRun:
    """The space as an Optuna define-by-run function (a picklable object, not a closure)."""

    space: SearchSpace

    def __call__(self, trial) -> dict[str, Any]:
        return {OPTUNA_CONFIG_KEY: suggest_config(self.space, trial)}


def suggest_config(space: SearchSpace, trial, prefix: str = "") -> dict[str, Any]:
    """Suggest one configuration through an Optuna trial, define-by-run; nested like `to_ray`'s."""
    config: dict[str, Any] = {}
    for param in space.params:
        # Branch parameters are named by their branch so TPE never mixes two branches' values.
        key = prefix + param.name
        if param.kind == "constant":
            config[param.name] = param.values[0]
        elif param.kind == "choice":
            value = _suggest_categorical(trial, key, param.values)
            if param.branches is not None:
                branch = suggest_config(param.branches[value], trial, prefix=f"{key}={value}:")
                config[param.name] = {BRANCH_KEY: value, **branch}
            else:
                config[param.name] = value
        elif param.kind == "int":
            config[param.name] = trial.suggest_int(key, param.low, param.high, step=param.step or 1)
        elif param.kind in ("uniform", "loguniform"):
            config[param.name] = trial.suggest_float(key, float(param.low), float(param.high),
                                                     step=param.step, log=param.kind == "loguniform")
        else:  # rejected by check_algorithm before a search starts
            raise ValueError(f"{param.path}: {param.kind} is not supported by Optuna")
    return config


def _suggest_categorical(trial, key: str, values: tuple[Any, ...]) -> Any:
    if all(value is None or isinstance(value, (bool, int, float, str)) for value in values):
        return trial.suggest_categorical(key, list(values))
    # Optuna stores only scalars: choose among JSON labels of lists and mappings.
    labels = [json.dumps(value, sort_keys=True) for value in values]
    return values[labels.index(trial.suggest_categorical(key, labels))]


class BranchAwareOptunaSearch(OptunaSearch):
    """Returns suggestions in the nested form of Ray's variant generator. Defined at module level:
    Tune pickles the searcher with the experiment state."""

    def suggest(self, trial_id: str):
        suggestion = super().suggest(trial_id)
        if isinstance(suggestion, dict) and OPTUNA_CONFIG_KEY in suggestion:
            return suggestion[OPTUNA_CONFIG_KEY]
        return suggestion


class ObjectiveOptunaSearch(BranchAwareOptunaSearch):
    """Several objectives and constraints: Optuna is told a trial's best value of the first objective
    (not its last epoch's), its costs, and how far it is from meeting each constraint (Optuna 5's
    `Trial.set_constraint`: feasible when every value is zero or less)."""

    def __init__(self, *, first: str, constraints: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self._first = first
        self._constraint_texts = constraints

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from hpsearch.platform import compat
        from hpsearch.search_spaces.objectives import Constraint, violations

        if result:
            best = result.get(f"best_{self._first}", result.get(self._first))
            result = {**result, self._first: best}
            trial = compat.optuna_trial_of(self, trial_id) if self._constraint_texts else None
            if trial is not None:
                constraints = [Constraint.parse(text) for text in self._constraint_texts]
                for name, value in violations(constraints, result).items():
                    trial.set_constraint(name, value)
        super().on_trial_complete(trial_id, result, error)
