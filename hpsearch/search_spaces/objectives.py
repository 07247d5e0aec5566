"""Several objectives and cost constraints: parsed, checked, and the Pareto front of a set of trials.

A constraint is a text such as `params <= 200000` on one of a trial's costs (trainables/cost.py).
Its violation is a number that is zero or less when it holds, as Optuna's constraint API takes it.
Constraints on what is known before training (the model's size, its latency) end an infeasible
trial before its first epoch; `peak_memory_mb` is known only once it trained.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from hpsearch.trainables.cost import COSTS

OPERATORS = ("<=", ">=", "<", ">")
# Measured before the first epoch (SearchTrial): a constraint on one of these ends a trial before it trains.
BEFORE_TRAINING = ("params", "macs", "size_mb", "latency_ms", "latency_batch_ms")
SHAPE_COSTS = ("params", "macs", "size_mb")  # of these, the ones a model's shapes alone give
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z_0-9]*)\s*(<=|>=|<|>)\s*([^\s<>=]\S*)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    operator: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        """`params <= 200000`; ValueError says what is wrong and what is allowed."""
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a constraint; write NAME OP NUMBER, e.g. 'params <= 200000', "
                             f"with OP one of {list(OPERATORS)} and NAME one of {list(COSTS)}")
        metric, operator, number = match.groups()
        if metric not in COSTS:
            from hpsearch._suggest import did_you_mean

            raise ValueError(f"{text!r}: {metric!r} is not a cost constraints can bound; one of {list(COSTS)}"
                             f"{did_you_mean(metric, list(COSTS))}")
        try:
            bound = float(number)
        except ValueError:
            bound = float("nan")
        if not math.isfinite(bound):
            raise ValueError(f"{text!r}: {number!r} is not a finite number")
        return cls(metric, operator, bound)

    @property
    def before_training(self) -> bool:
        return self.metric in BEFORE_TRAINING

    def violation(self, value: float) -> float:
        """How far `value` is from satisfying the constraint: <= 0 when it holds (Optuna's convention)."""
        if self.operator in ("<=", "<"):
            excess = value - self.bound
        else:
            excess = self.bound - value
        if self.operator in ("<", ">") and excess == 0:
            return math.ulp(max(abs(self.bound), 1.0))  # equal is not strictly less or greater
        return excess

    def holds(self, value: float) -> bool:
        return self.violation(value) <= 0

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {self.bound:.15g}"


def impossible(constraints: Sequence[Constraint]) -> list[str]:
    """Constraints no trial can meet, each a line naming them: a cost bounded below zero (every cost is
    zero or more), or bounds on one cost that exclude each other. Such a search would train nothing."""
    problems = []
    for constraint in constraints:
        if constraint.operator in ("<=", "<") and not constraint.holds(0.0):
            problems.append(f"{str(constraint)!r} can never hold: {constraint.metric} is never below zero")
    for metric in dict.fromkeys(constraint.metric for constraint in constraints):
        upper = [c for c in constraints if c.metric == metric and c.operator in ("<=", "<")]
        lower = [c for c in constraints if c.metric == metric and c.operator in (">=", ">")]
        for low in lower:
            for high in upper:
                strict = low.operator == ">" or high.operator == "<"
                if low.bound > high.bound or (strict and low.bound == high.bound):
                    problems.append(f"{str(low)!r} and {str(high)!r} cannot both hold")
    return problems


def violations(constraints: Sequence[Constraint], values: Mapping[str, float]) -> dict[str, float]:
    """Each constraint's violation (keyed by its text) for the costs in `values`; those not measured are left out."""
    return {str(constraint): constraint.violation(float(values[constraint.metric]))
            for constraint in constraints if values.get(constraint.metric) is not None}


def objective_keys(objectives: Sequence[tuple[str, str]]) -> list[str]:
    """Where a trial's result and its row of the trials table hold each objective: the first, a metric
    of training, as its best epoch's value (`best_<metric>`); the others, costs, as measured."""
    return [f"best_{metric}" if index == 0 else metric for index, (metric, _) in enumerate(objectives)]


def _signed(point: Sequence[float], modes: Sequence[str]) -> list[float]:
    """The point with every objective made larger-is-better."""
    return [value if mode == "max" else -value for value, mode in zip(point, modes)]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Signed `a` is at least as good as signed `b` in every objective and better in one."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_mask(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[bool]:
    """Which points no other point dominates (at least as good in every objective, better in one)."""
    scored = [_signed(point, modes) for point in points]
    return [not any(_dominates(other, point) for other in scored) for point in scored]


class ParetoFront:
    """The front of points added one at a time, each under a key and once (a trial as it ends): each is
    compared with the front alone, so keeping it costs the front's size a point, not the points' count."""

    def __init__(self, modes: Sequence[str]) -> None:
        self._modes = list(modes)
        self._seen: set[str] = set()
        self._points: list[list[float]] = []  # signed

    def __len__(self) -> int:
        return len(self._points)

    def add(self, key: str, values: Sequence[float] | None) -> None:
        """Add `key`'s objective values (once; None: not measured, never on the front)."""
        if key in self._seen:
            return
        self._seen.add(key)
        if values is None:
            return
        point = _signed(values, self._modes)
        if any(_dominates(other, point) for other in self._points):
            return
        self._points = [other for other in self._points if not _dominates(point, other)] + [point]


def hypervolume_2d(points: Iterable[Sequence[float]], modes: Sequence[str], reference: Sequence[float]) -> float:
    """The area two objectives' points dominate up to `reference` (worse than every point in both)."""
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    # As maximization of both, measured from the reference point.
    scored = sorted(((signs[0] * (x - reference[0]), signs[1] * (y - reference[1])) for x, y in points),
                    key=lambda point: -point[0])
    area, best_y = 0.0, 0.0
    for x, y in scored:
        if x > 0 and y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area
