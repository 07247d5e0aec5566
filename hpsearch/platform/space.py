"""The search space: parsed once from the spec's `space` mapping, converted to Ray Tune and Optuna here only.

Traps handled here and tested in tests/platform/test_space.py:
- Ray's `randint(low, high)` excludes `high`; the spec's `int: [low, high]` includes it, like
  Optuna's `suggest_int`. Ray's `qrandint` already includes its upper bound.
- OptunaSearch cannot enumerate a grid, and cannot quantize a log scale.
- Conditional parameters become nested branch dicts for Ray's variant generator and
  define-by-run suggestions for Optuna; both come back to one flat parameter dict.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from hpsearch._suggest import did_you_mean

KINDS = ("constant", "choice", "grid", "uniform", "loguniform", "int")
ALGORITHMS = ("grid", "random", "optuna")
BRANCH_KEY = "__branch__"  # marks the dict of a conditional branch in a Ray config
OPTUNA_CONFIG_KEY = "__config__"
MAX_GRID_VALUES = 10_000  # a range enumerated for a grid search may not expand beyond this
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpaceError(ValueError):
    """One or more problems in a `space` mapping, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Param:
    """One parameter of the space; `branches` maps a choice's values to the parameters they enable."""

    name: str
    path: str  # where it is in the spec, e.g. space.model.choice.cnn.channels
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    branches: Mapping[Any, "SearchSpace"] | None = None

    @property
    def is_range(self) -> bool:
        return self.kind in ("uniform", "loguniform", "int")


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def walk(self) -> Iterator[Param]:
        """Every parameter, branch parameters included."""
        for param in self.params:
            yield param
            for branch in (param.branches or {}).values():
                yield from branch.walk()

    def names(self) -> set[str]:
        return {param.name for param in self.walk()}


# --------------------------------------------------------------------------- parsing

def parse_space(raw: Any, *, path: str = "space", allowed: Mapping[str, Any] | None = None,
                check_value=None) -> SearchSpace:
    """Parse the raw `space` mapping, collecting every problem before raising SpaceError.

    `allowed` names the parameters a trial accepts; `check_value(name, value)` returns an error
    message for a value that parameter cannot take, or None.
    """
    problems: list[str] = []
    space = _parse_mapping(raw, path, problems, allowed, check_value, enclosing=frozenset())
    if problems:
        raise SpaceError(problems)
    return space


def _parse_mapping(raw, path, problems, allowed, check_value, enclosing: frozenset) -> SearchSpace:
    if raw is None:
        return SearchSpace()
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: expected a mapping of parameter names to distributions, got {show_value(raw)}")
        return SearchSpace()
    params = []
    level = {name for name in raw if isinstance(name, str)}
    for name, value in raw.items():
        param_path = f"{path}.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{param_path}: parameter names are identifiers (letters, digits, _), got {name!r}")
            continue
        if allowed is not None and name not in allowed:
            problems.append(f"{param_path}: unknown parameter {name!r}; known: {sorted(allowed)}"
                            f"{did_you_mean(name, list(allowed))}")
            continue
        if name in enclosing:
            problems.append(f"{param_path}: {name!r} is already a parameter of an enclosing level; "
                            f"a name may appear once on any path through the space")
            continue
        param = _parse_param(name, value, param_path, problems, allowed, check_value, enclosing | level)
        if param is not None:
            params.append(param)
    return SearchSpace(tuple(params))


def _parse_param(name, raw, path, problems, allowed, check_value, enclosing) -> Param | None:
    if not isinstance(raw, Mapping):  # a bare value (scalar or list) is a constant
        return _checked(Param(name, path, "constant", values=(raw,)), problems, check_value)
    kinds = [key for key in raw if key in KINDS]
    extra = [key for key in raw if key not in KINDS and key != "step"]
    if len(kinds) != 1 or extra:
        unknown = extra[0] if extra else None
        hint = did_you_mean(unknown, list(KINDS)) if unknown is not None else ""
        got = f"keys {sorted(map(str, raw))}" if raw else "an empty mapping"
        problems.append(f"{path}: expected exactly one of {list(KINDS)} (plus optional step), got {got}{hint}")
        return None
    kind = kinds[0]
    body, step = raw[kind], raw.get("step")
    if step is not None and kind not in ("uniform", "loguniform", "int"):
        problems.append(f"{path}.step: only uniform, loguniform and int take a step, not {kind}")
        return None
    if kind == "constant":
        return _checked(Param(name, path, kind, values=(body,)), problems, check_value)
    if kind in ("choice", "grid"):
        return _parse_values(name, kind, body, path, problems, allowed, check_value, enclosing)
    return _parse_range(name, kind, body, step, path, problems, check_value)


def _parse_values(name, kind, body, path, problems, allowed, check_value, enclosing) -> Param | None:
    where = f"{path}.{kind}"
    if isinstance(body, Mapping):  # conditional: each value enables its own sub-space
        if not body:
            problems.append(f"{where}: empty; list at least one value")
            return None
        branches = {value: _parse_mapping(sub, f"{where}.{value}", problems, allowed, check_value, enclosing)
                    for value, sub in body.items()}
        param = Param(name, path, kind, values=tuple(body), branches=branches)
        return _checked(param, problems, check_value)
    if not isinstance(body, list):
        problems.append(f"{where}: expected a list of values (or a mapping of value -> parameters), got {show_value(body)}")
        return None
    if not body:
        problems.append(f"{where}: empty; list at least one value")
        return None
    return _checked(Param(name, path, kind, values=tuple(body)), problems, check_value)


def _parse_range(name, kind, body, step, path, problems, check_value) -> Param | None:
    where = f"{path}.{kind}"
    if not (isinstance(body, list) and len(body) == 2):
        problems.append(f"{where}: expected [low, high], got {show_value(body)}")
        return None
    numeric = int if kind == "int" else (int, float)
    low, high = body
    bad = [v for v in (low, high, step) if v is not None and (isinstance(v, bool) or not isinstance(v, numeric))]
    if bad:
        wanted = "integers" if kind == "int" else "numbers"
        problems.append(f"{where}: bounds and step must be {wanted}, got {show_value(bad[0])}")
        return None
    if not low <= high:
        problems.append(f"{where}: low <= high must hold, got low={low}, high={high}")
        return None
    if kind == "loguniform" and low <= 0:
        problems.append(f"{where}: loguniform needs low > 0, got low={low}")
        return None
    if step is not None and step <= 0:
        problems.append(f"{path}.step: must be > 0, got {step}")
        return None
    param = Param(name, path, kind, low=low, high=high, step=step)
    for bound in (low, high):
        message = check_value(name, bound) if check_value else None
        if message:
            problems.append(f"{where}: bound {bound!r} is not allowed for {name}: {message}")
            return None
    return param


def _checked(param: Param, problems: list[str], check_value) -> Param | None:
    if check_value is None:
        return param
    suffix = "" if param.kind == "constant" and not isinstance(param.values[0], Mapping) else f".{param.kind}"
    for value in param.values:
        message = check_value(param.name, value)
        if message:
            problems.append(f"{param.path}{suffix}: {show_value(value)} is not allowed for {param.name}: {message}")
            return None
    return param


def show_value(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- algorithms

def check_algorithm(space: SearchSpace, algorithm: str) -> list[str]:
    """Problems with running `space` under `algorithm`, each saying what to write instead."""
    problems = []
    for param in space.walk():
        if algorithm == "optuna" and param.kind == "grid":
            problems.append(f"{param.path}: grid cannot run under search.algorithm 'optuna' (Optuna samples, "
                            f"it does not enumerate); write choice: [...] instead, or use algorithm 'grid'")
        if algorithm == "optuna" and param.kind == "loguniform" and param.step is not None:
            problems.append(f"{param.path}: Optuna cannot quantize a log scale; drop step, "
                            f"or use algorithm 'random'")
        if algorithm == "grid" and param.is_range and not _enumerable(param):
            problems.append(f"{param.path}: {param.kind} cannot be enumerated by search.algorithm 'grid'; "
                            f"list the values with grid: [...], add a step to a uniform or int range, "
                            f"or use algorithm 'random' or 'optuna'")
    return problems


def _enumerable(param: Param) -> bool:
    if param.kind == "loguniform":
        return False
    if param.kind == "uniform" and param.step is None:
        return False
    return len(_range_values(param)) <= MAX_GRID_VALUES


def _range_values(param: Param) -> list[Any]:
    step = param.step or 1
    count = math.floor((param.high - param.low) / step + 1e-9) + 1
    if count > MAX_GRID_VALUES:
        return [None] * (MAX_GRID_VALUES + 1)
    if param.kind == "int":
        return list(range(param.low, param.high + 1, step))
    return [round(param.low + i * step, 12) for i in range(count)]


def grid_size(space: SearchSpace, algorithm: str) -> int:
    """How many configurations a grid search enumerates (each repeated num_samples times)."""
    total = 1
    for param in space.params:
        total *= _param_grid_size(param, algorithm)
    return total


def _param_grid_size(param: Param, algorithm: str) -> int:
    enumerated = param.kind == "grid" or (algorithm == "grid" and param.kind == "choice")
    if param.branches is not None:
        sizes = [grid_size(branch, algorithm) for branch in param.branches.values()]
        return sum(sizes) if enumerated else max(sizes)
    if enumerated:
        return len(param.values)
    if algorithm == "grid" and param.is_range:
        return len(_range_values(param))
    return 1


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
            config[param.name] = tune.grid_search(_range_values(param))
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


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters as one flat dict: branch dicts give their value and their parameters."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, Mapping) and BRANCH_KEY in value:
            flat[name] = value[BRANCH_KEY]
            flat.update(flatten_config({k: v for k, v in value.items() if k != BRANCH_KEY}))
        else:
            flat[name] = value
    return flat


# --------------------------------------------------------------------------- Optuna

def make_optuna_searcher(space: SearchSpace, *, metric: str, mode: str, seed: int):
    """Ray's OptunaSearch over a define-by-run space with a seeded TPE sampler."""
    import optuna

    from hpsearch.platform._optuna import BranchAwareOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    return BranchAwareOptunaSearch(space=DefineByRun(space), metric=metric, mode=mode, sampler=sampler)


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
