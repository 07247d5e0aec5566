"""The README's complete spec example is a spec that validates, and its commands exist."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from hpsearch.platform.cli import build_parser
from hpsearch.platform.search import planned_trials
from hpsearch.search_spaces.spec import validate_spec

README = Path(__file__).resolve().parents[1] / "README.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)


def test_complete_example_validates_under_every_algorithm():
    raw = yaml.safe_load(_yaml_blocks()[0])
    assert set(raw) >= {"name", "dataset", "search", "resources", "train", "tracking", "space"}
    spec = validate_spec(raw)
    assert planned_trials(spec) == raw["search"]["num_samples"]
    # Every distribution in it is one Optuna can suggest.
    optuna_spec = validate_spec({**raw, "search": {**raw["search"], "algorithm": "optuna"}})
    assert optuna_spec.search.algorithm == "optuna"


def test_commands_in_the_readme_table_exist():
    commands = set(re.findall(r"^\| `hpsearch (\w[\w-]*)", README.read_text(), flags=re.M))
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert commands and commands <= set(subparsers.choices)


def test_what_a_trial_trains_lists_every_field_with_its_default():
    import json

    from hpsearch.trainables import TrainConfig

    rows = dict(re.findall(r"^\|[^|]*\| `(\w+)` \| `([^`]*)` \|", README.read_text(), flags=re.M))
    defaults = TrainConfig().model_dump()
    assert set(rows) == set(defaults)
    for name, default in defaults.items():
        assert rows[name] == (default if isinstance(default, str) else json.dumps(default)), name
