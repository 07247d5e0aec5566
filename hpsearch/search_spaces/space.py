"""The search space: parsed once from the spec's `space` mapping into typed parameters.

No Ray and no Optuna here: `hpsearch.platform.tune_space` converts a space for them. What either
cannot run (OptunaSearch cannot enumerate a grid, nor quantize a log scale) is refused here, by
`check_algorithm`, before anything starts. Conditional parameters (a choice whose values each
enable their own parameters) come back from both as one flat parameter dict (`flatten_config`).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from hpsearch._suggest import did_you_mean

KINDS = ("constant", "choice", "grid", "uniform", "loguniform", "int")
ALGORITHMS = ("grid", "random", "optuna")
BRANCH_KEY = "__branch__"  # marks the dict of a conditional branch in a Ray config
OPTUNA_CONFIG_KEY = "__config__"
OPTUNA_STARTUP_TRIALS = 10  # Optuna's TPE draws this many trials at random before it models the results
MAX_GRID_VALUES = 10_000  # a range enumerated for a grid search may not expand beyond this
MAX_INT_BOUND = 2**53  # int ranges stay where a float (Optuna's, numpy's) still counts every integer
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_PART = re.compile(r"^[A-Za-z0-9_-]{1,60}$")


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
        param_path = f"{path}.{path_part(name)}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{param_path}: parameter names are identifiers (letters, digits, _), "
                            f"got {show_value(name)}")
            continue
        if allowed is not None and name not in allowed:
            problems.append(f"{param_path}: unknown parameter {show_value(name)}; known: {sorted(allowed)}"
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
        branches = {value: _parse_mapping(sub, f"{where}.{path_part(value)}", problems, allowed, check_value,
                                          enclosing)
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
    low, high = body
    problem = _range_problem(kind, low, high, step)
    if problem:
        problems.append(f"{where}: {problem}")
        return None
    problem = _step_problem(low, high, step) if step is not None else None
    if problem:
        problems.append(f"{path}.step: {problem}")
        return None
    param = Param(name, path, kind, low=low, high=high, step=step)
    for bound in (low, high):
        message = check_value(name, bound) if check_value else None
        if message:
            problems.append(f"{where}: bound {show_value(bound)} is not allowed for {name}: {message}")
            return None
    return param


def _range_problem(kind: str, low: Any, high: Any, step: Any) -> str | None:
    """What is wrong with a range's bounds (and the step's type), or None."""
    numeric = int if kind == "int" else (int, float)
    given = (low, high) if step is None else (low, high, step)  # only the step is optional
    bad = [v for v in given if isinstance(v, bool) or not isinstance(v, numeric)]
    if bad:
        wanted = "integers" if kind == "int" else "numbers"
        return f"bounds and step must be {wanted}, got {show_value(bad[0])}"
    if kind == "int" and any(abs(v) > MAX_INT_BOUND for v in (low, high, step) if v is not None):
        return f"int bounds and step lie within +-{MAX_INT_BOUND:,} (2**53), got [{show_value(low)}, {show_value(high)}]"
    if not all(_finite(v) for v in (low, high)):
        return f"bounds must be finite numbers, got low={show_value(low)}, high={show_value(high)}"
    if not low <= high:
        return f"low <= high must hold, got low={show_value(low)}, high={show_value(high)}"
    if kind == "loguniform" and low <= 0:
        return f"loguniform needs low > 0, got low={show_value(low)}"
    return None


def _step_problem(low, high, step) -> str | None:
    """What is wrong with the step of a range whose bounds are fine, or None."""
    if not _finite(step):
        return f"must be a finite number, got {show_value(step)}"
    if step <= 0:
        return f"must be > 0, got {step}"
    if low < high and step > high - low:
        return (f"{step} is wider than the range [{low}, {high}], so no second value fits; "
                f"a step is at most high - low ({high - low})")
    # Ray samples multiples of step within the bounds, Optuna and grid count from low: on bounds that
    # are multiples of step, all three take the same values.
    off = [bound for bound in (low, high) if not _multiple(bound, step)]
    if off:
        return (f"{step} does not fit the range [{low}, {high}]: {off[0]} is not a multiple of it; "
                f"the bounds must be multiples of step")
    return None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _multiple(value, step) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    quotient = value / step
    return math.isfinite(quotient) and math.isclose(quotient, round(quotient), rel_tol=1e-9, abs_tol=1e-9)


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
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    return text if len(text) <= 60 else text[:57] + "..."


def path_part(key: Any) -> str:
    """A key as one part of a dotted path in a message: as written when it is a plain name, else quoted."""
    return key if isinstance(key, str) and _PLAIN_PART.match(key) else show_value(key)


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
    return len(range_values(param)) <= MAX_GRID_VALUES


def range_values(param: Param) -> list[Any]:
    step = param.step or 1
    if param.kind == "int":
        count = (param.high - param.low) // step + 1
    else:
        span = (param.high - param.low) / step  # inf for a range wider than a float counts
        count = math.floor(span + 1e-9) + 1 if math.isfinite(span) else MAX_GRID_VALUES + 1
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
        return len(range_values(param))
    return 1


def draw_configuration(space: SearchSpace, rng: random.Random) -> dict[str, Any]:
    """One configuration drawn at random, flat as `flatten_config` gives a trial's: a choice's value
    with its branch's parameters; ranges uniform (log-uniform for loguniform), on their step if any."""
    flat: dict[str, Any] = {}
    for param in space.params:
        value = flat[param.name] = _draw(param, rng)
        if param.branches and isinstance(value, (str, int, float, bool)) and value in param.branches:
            flat.update(draw_configuration(param.branches[value], rng))
    return flat


def _draw(param: Param, rng: random.Random) -> Any:
    if not param.is_range:
        return rng.choice(param.values)
    if param.kind == "int":
        step = int(param.step or 1)
        return param.low + step * rng.randint(0, (param.high - param.low) // step)
    if param.kind == "loguniform":
        value = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    else:
        value = rng.uniform(param.low, param.high)
    if param.step:
        value = min(param.high, param.low + round((value - param.low) / param.step) * param.step)
    return value


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
