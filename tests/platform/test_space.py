"""The space conversions' traps: inclusive int bounds, grids per branch, Optuna's limits, flattening."""
from __future__ import annotations

import re

import numpy as np
import optuna
import pytest
from ray.tune.search.variant_generator import generate_variants

from hpsearch.platform.tune_space import DefineByRun, suggest_config, to_ray
from hpsearch.search_spaces.space import SpaceError, check_algorithm, flatten_config, grid_size, parse_space

CONDITIONAL = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "model": {"choice": {
        "mlp": {"hidden_sizes": {"choice": [[64], [128, 64]]}},
        "cnn": {"channels": {"int": [8, 32], "step": 8}, "depth": {"int": [1, 3]}},
    }},
    "optimizer": {"choice": {"adam": None, "sgd": {"momentum": {"uniform": [0.8, 0.99]}}}},
}
BRANCH_PARAMS = {"mlp": {"hidden_sizes"}, "cnn": {"channels", "depth"}}


def _random_configs(raw, algorithm="random", count=200, seed=0):
    space = parse_space(raw)
    rng = np.random.RandomState(seed)
    configs = []
    while len(configs) < count:
        configs += [flatten_config(c) for _, c in generate_variants(to_ray(space, algorithm), random_state=rng)]
    return configs


def _optuna_configs(raw, count=60, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    configs = []
    for _ in range(count):
        trial = study.ask()
        configs.append(flatten_config(suggest_config(parse_space(raw), trial)))
        study.tell(trial, float(len(configs) % 7))
    return configs


def test_int_bounds_are_inclusive_under_ray_and_optuna():
    raw = {"depth": {"int": [1, 3]}}
    assert {c["depth"] for c in _random_configs(raw)} == {1, 2, 3}  # Ray's randint alone would never give 3
    assert {c["depth"] for c in _optuna_configs(raw)} == {1, 2, 3}


def test_int_step_includes_the_upper_bound():
    raw = {"channels": {"int": [8, 32], "step": 8}}
    assert {c["channels"] for c in _random_configs(raw)} == {8, 16, 24, 32}
    assert {c["channels"] for c in _optuna_configs(raw)} <= {8, 16, 24, 32}


def test_random_conditional_configs_hold_only_their_branch_parameters():
    configs = _random_configs(CONDITIONAL)
    assert {c["model"] for c in configs} == {"mlp", "cnn"}
    for config in configs:
        other = "cnn" if config["model"] == "mlp" else "mlp"
        assert BRANCH_PARAMS[config["model"]] <= config.keys()
        assert not BRANCH_PARAMS[other] & config.keys()
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert 1e-4 <= config["lr"] <= 1e-1


def test_optuna_conditional_configs_hold_only_their_branch_parameters():
    configs = _optuna_configs(CONDITIONAL)
    assert {c["model"] for c in configs} == {"mlp", "cnn"}
    for config in configs:
        other = "cnn" if config["model"] == "mlp" else "mlp"
        assert not BRANCH_PARAMS[other] & config.keys()
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
    # Lists are not Optuna categoricals: they come back as the lists the spec wrote.
    assert {tuple(c["hidden_sizes"]) for c in configs if c["model"] == "mlp"} <= {(64,), (128, 64)}


def test_optuna_names_branch_parameters_by_their_branch():
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    config = flatten_config(DefineByRun(parse_space(CONDITIONAL))(trial)["__config__"])
    branch = config["model"]
    assert any(name.startswith(f"model={branch}:") for name in trial.params)


def test_grid_expands_each_branch_product():
    raw = {"model": {"grid": {"mlp": {"hidden_sizes": {"grid": [[32], [64]]}},
                              "cnn": {"channels": {"grid": [4, 8]}, "depth": {"grid": [1, 2]}}}},
           "batch_size": {"choice": [32, 64]}}
    space = parse_space(raw)
    configs = [flatten_config(c) for _, c in generate_variants(to_ray(space, "grid"))]
    assert len(configs) == grid_size(space, "grid") == (2 + 4) * 2
    assert len({tuple(sorted((k, str(v)) for k, v in c.items())) for c in configs}) == len(configs)
    assert all("hidden_sizes" not in c for c in configs if c["model"] == "cnn")


def test_grid_algorithm_enumerates_int_ranges_and_stepped_uniforms():
    space = parse_space({"depth": {"int": [1, 3]}, "dropout": {"uniform": [0.0, 0.5], "step": 0.25}})
    configs = [flatten_config(c) for _, c in generate_variants(to_ray(space, "grid"))]
    assert sorted((c["depth"], c["dropout"]) for c in configs) == [
        (d, p) for d in (1, 2, 3) for p in (0.0, 0.25, 0.5)]


@pytest.mark.parametrize(("raw", "algorithm", "message"), [
    ({"lr": {"grid": [0.1, 0.01]}}, "optuna", r"space\.lr: grid cannot run under .*'optuna'.*write choice"),
    ({"lr": {"loguniform": [1e-3, 1e-1], "step": 1e-3}}, "optuna", r"space\.lr: Optuna cannot quantize"),
    ({"lr": {"loguniform": [1e-3, 1e-1]}}, "grid", r"space\.lr: loguniform cannot be enumerated.*grid: \[\.\.\.\]"),
    ({"dropout": {"uniform": [0, 0.5]}}, "grid", r"space\.dropout: uniform cannot be enumerated.*add a step"),
])
def test_combinations_that_cannot_work_say_what_to_write(raw, algorithm, message):
    problems = check_algorithm(parse_space(raw), algorithm)
    assert len(problems) == 1
    assert re.search(message, problems[0]), problems[0]


def test_one_spec_runs_under_every_algorithm_when_its_distributions_allow():
    raw = {"lr": {"choice": [0.01, 0.001]}, "depth": {"int": [1, 2]},
           "model": {"choice": {"cnn": {"channels": {"choice": [8, 16]}}, "mlp": None}}}
    space = parse_space(raw)
    assert all(check_algorithm(space, algorithm) == [] for algorithm in ("grid", "random", "optuna"))


def test_a_name_may_appear_once_on_any_path():
    with pytest.raises(SpaceError, match=r"space\.optimizer\.choice\.sgd\.lr: 'lr' is already a parameter"):
        parse_space({"lr": 0.1, "optimizer": {"choice": {"sgd": {"lr": {"uniform": [0.1, 0.2]}}}}})
    # Sibling branches may each have their own.
    space = parse_space({"optimizer": {"choice": {"sgd": {"lr": 0.1}, "adam": {"lr": 0.001}}}})
    assert [p.name for p in space.walk()].count("lr") == 2


def test_flatten_config_lifts_nested_branches():
    nested = {"lr": 0.1, "model": {"__branch__": "cnn", "channels": 8,
                                   "norm": {"__branch__": "batch", "momentum": 0.1}}}
    assert flatten_config(nested) == {"lr": 0.1, "model": "cnn", "channels": 8, "norm": "batch", "momentum": 0.1}


def test_drawn_configurations_are_the_ones_ray_draws_from_the_same_space():
    """validate previews a space's costs on configurations it draws without Ray: the same keys, values
    and bounds as a random search's trials get."""
    import random

    from hpsearch.search_spaces.space import draw_configuration

    raw = {**CONDITIONAL, "dropout": {"uniform": [0.0, 0.5], "step": 0.1}, "batch_size": {"grid": [32, 64]}}
    space, rng = parse_space(raw), random.Random(0)
    drawn = [draw_configuration(space, rng) for _ in range(300)]
    ours = _random_configs(raw, count=300)
    assert {frozenset(c) for c in drawn} == {frozenset(c) for c in ours}  # each branch with its own parameters
    for key in ("model", "optimizer", "batch_size", "channels", "depth", "dropout"):
        assert {repr(c[key]) for c in drawn if key in c} == {repr(c[key]) for c in ours if key in c}, key
    lrs = [c["lr"] for c in drawn]
    assert 1e-4 <= min(lrs) and max(lrs) <= 0.1
    assert 0.4 < sum(lr < 10 ** -2.5 for lr in lrs) / len(lrs) < 0.6  # log-uniform: half below the log middle
    momenta = [c["momentum"] for c in drawn if "momentum" in c]
    assert 0.8 <= min(momenta) and max(momenta) <= 0.99
    again = random.Random(0)
    assert [draw_configuration(space, again) for _ in range(20)] == drawn[:20]  # a seed gives the same draws
