"""Objectives and constraints in a spec, constraint arithmetic, and the Pareto front against brute force."""
from __future__ import annotations

import itertools
import random
import re

import pytest

from hpsearch.search_spaces.objectives import Constraint, ParetoFront, hypervolume_2d, pareto_mask, violations
from hpsearch.search_spaces.spec import SpecError, validate_spec


@pytest.mark.parametrize(("text", "value", "holds"), [
    ("params <= 200000", 200000, True), ("params <= 200000", 200001, False), ("latency_ms < 2.5", 2.5, False),
    ("latency_ms < 2.5", 2.4, True), ("size_mb >= 1", 0.5, False), ("macs > 10", 11, True),
])
def test_a_constraint_holds_when_its_violation_is_not_positive(text, value, holds) -> None:
    constraint = Constraint.parse(text)
    assert constraint.holds(value) is holds and (constraint.violation(value) <= 0) is holds


def test_constraints_known_before_training_and_their_violations() -> None:
    constraints = [Constraint.parse(text) for text in ("params <= 100", "peak_memory_mb <= 10", "latency_ms <= 1")]
    assert [c.before_training for c in constraints] == [True, False, True]
    assert violations(constraints, {"params": 150, "latency_ms": 0.5}) == {"params <= 100": 50, "latency_ms <= 1": -0.5}


def _brute_force(points, modes):
    better = [(lambda a, b: a >= b) if mode == "max" else (lambda a, b: a <= b) for mode in modes]
    strictly = [(lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b) for mode in modes]
    return [not any(all(f(o, p) for f, o, p in zip(better, other, point)) and
                    any(f(o, p) for f, o, p in zip(strictly, other, point)) for other in points)
            for point in points]


def _random_cases(seed: int):
    """50 sets of 1 to 12 three-objective points, with ties, each under every combination of modes."""
    generator = random.Random(seed)
    for _ in range(50):
        points = [(generator.choice([0.8, 0.9, 0.95]), generator.randint(1, 5), generator.random())
                  for _ in range(generator.randint(1, 12))]
        for modes in itertools.product(("max", "min"), repeat=3):
            yield points, modes


def test_the_pareto_front_matches_a_brute_force_one() -> None:
    for points, modes in _random_cases(0):
        assert pareto_mask(points, modes) == _brute_force(points, modes)


def test_the_front_kept_as_trials_end_is_the_brute_force_one() -> None:
    for points, modes in _random_cases(1):
        front = ParetoFront(modes)
        for index, point in enumerate(points):
            front.add(f"t{index}", point)
            front.add(f"t{index}", (0.0, 0.0, 0.0) if modes[0] == "max" else (9.0, 9.0, 9.0))  # once per trial
        front.add("unmeasured", None)
        assert len(front) == sum(_brute_force(points, modes)), (points, modes)


def test_hypervolume_of_two_objectives() -> None:
    # Accuracy up, latency down, from reference (0, 10): rectangles 0.9 x 8 and 0.5 x (8..9) overlap.
    assert hypervolume_2d([(0.9, 2.0), (0.5, 1.0)], ["max", "min"], [0.0, 10.0]) == pytest.approx(0.9 * 8 + 0.5 * 1)
    assert hypervolume_2d([(0.9, 12.0)], ["max", "min"], [0.0, 10.0]) == 0.0  # worse than the reference


def _problems(search: dict) -> list[str]:
    with pytest.raises(SpecError) as raised:
        validate_spec({"name": "x", "search": search})
    return raised.value.problems


@pytest.mark.parametrize(("search", "pattern"), [
    ({"objectives": [{"metric": "val_accuracy", "mode": "max"}]}, r"search\.objectives: 1 objective; give 2 to 4"),
    ({"objectives": [{"metric": "latency_ms", "mode": "min"}, {"metric": "val_accuracy", "mode": "max"}]},
     r"search\.objectives\.0\.metric: 'latency_ms' is a cost"),
    ({"objectives": [{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_loss", "mode": "min"}]},
     r"search\.objectives\.1\.metric: 'val_loss' is a metric of training; the objectives after the first are costs"),
    ({"objectives": [{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"},
                     {"metric": "params", "mode": "min"}]}, r"\['params'\] given more than once"),
    ({"metric": "val_loss", "mode": "min", "objectives": [{"metric": "val_accuracy", "mode": "max"},
                                                           {"metric": "params", "mode": "min"}]},
     r"search\.metric: 'val_loss' \(min\) is not the first objective"),
    ({"objectives": [{"metric": "val_accuracy", "mode": "max"}, {"metric": "latency", "mode": "min"}]},
     r"search\.objectives\.1\.metric: unknown metric 'latency'.*did you mean 'latency_ms'"),
    ({"constraints": ["params <= 200000", "latency < fast"]}, r"search\.constraints\.1: 'latency < fast'"),
    ({"constraints": ["val_accuracy >= 0.9"]}, r"search\.constraints\.0: .*'val_accuracy' is not a cost"),
    ({"constraints": ["params = 5"]}, r"search\.constraints\.0: 'params = 5' is not a constraint"),
    ({"constraints": ["params <= "]}, r"search\.constraints\.0: 'params <= ' is not a constraint"),
    ({"objectives": [{"metric": "val_accuracy", "mode": "max", "direction": "up"}, {"metric": "params", "mode": "min"}]},
     r"search\.objectives\.0\.direction: unknown key; allowed: \['metric', 'mode'\]"),
    ({"constraints": ["params <= -1"]}, r"search\.constraints: 'params <= -1' can never hold: params is never below"),
    ({"constraints": ["latency_ms < 0"]}, r"'latency_ms < 0' can never hold"),
    ({"constraints": ["params <= 5e4", "latency_ms >= 2", "latency_ms <= 1"]},
     r"search\.constraints: 'latency_ms >= 2' and 'latency_ms <= 1' cannot both hold; no trial could be feasible"),
    ({"constraints": ["size_mb > 1", "size_mb <= 1"]}, r"'size_mb > 1' and 'size_mb <= 1' cannot both hold"),
])
def test_objectives_and_constraints_that_cannot_work_are_one_line_each(search, pattern) -> None:
    problems = _problems(search)
    assert re.search(pattern, problems[0]) and all("\n" not in problem for problem in problems), problems


@pytest.mark.parametrize("constraints", [["params <= 0"], ["latency_ms >= 1", "latency_ms <= 1"],
                                         ["latency_ms >= 1", "latency_ms <= 2", "params >= 5"]])
def test_constraints_some_trial_could_meet_are_accepted(constraints) -> None:
    spec = validate_spec({"name": "x", "search": {"constraints": constraints}})
    assert spec.search.constraints == constraints


def test_a_constraint_keeps_its_bound_as_written() -> None:
    assert str(Constraint.parse("params <= 1234567")) == "params <= 1234567"
    assert str(Constraint.parse("latency_ms < 2.25")) == "latency_ms < 2.25"


def test_the_first_objective_becomes_the_metric() -> None:
    spec = validate_spec({"name": "x", "search": {
        "objectives": [{"metric": "val_loss", "mode": "min"}, {"metric": "latency_ms", "mode": "min"}],
        "constraints": ["params <= 1e5"]}})
    assert (spec.search.metric, spec.search.mode) == ("val_loss", "min")
    assert [str(c) for c in spec.search.constraint_list] == ["params <= 100000"]
    assert validate_spec(spec.to_dict()).to_dict() == spec.to_dict()  # dumped and read back, the same spec
