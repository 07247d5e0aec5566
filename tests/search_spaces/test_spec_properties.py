"""Whatever a spec file holds, it is a valid spec or a SpecError of one-line problems, and
`hpsearch validate` exits 0 or 2 without a traceback.

Hypothesis mutates the built-in specs (drops, replaces and inserts keys and values anywhere in them)
and writes YAML text from a spec's and an attacker's vocabulary. Derandomized: CI runs the same cases.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpsearch.platform.cli import main
from hpsearch.search_spaces._safe_yaml import load_yaml
from hpsearch.search_spaces.space import KINDS
from hpsearch.search_spaces.spec import (BUILTIN_PACKAGE, DatasetSpec, Resources, SchedulerSpec, SearchSettings, Spec,
                                         SpecError, TrackingSpec, builtin_specs, load_spec, validate_spec)
from hpsearch.trainables import TrainConfig

MUTATED_CASES = 600
TEXT_CASES = 500
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the cases' own writing costs little
PROPERTY_SETTINGS = settings(derandomize=True, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BUILTIN_TEXTS = [(resources.files(BUILTIN_PACKAGE) / f"{name}.yaml").read_text() for name in builtin_specs()]
BUILTIN_RAW = [yaml.safe_load(text) for text in BUILTIN_TEXTS]

KEYS = sorted({*Spec.model_fields, *DatasetSpec.model_fields, *SearchSettings.model_fields,
               *SchedulerSpec.model_fields, *Resources.model_fields, *TrackingSpec.model_fields,
               *TrainConfig.model_fields, *KINDS, "step"})
WORDS = ["grid", "random", "optuna", "asha", "none", "max", "min", "val_loss", "val_accuracy", "train_accuracy",
         "cnn", "mlp", "resnet", "adam", "sgd", "digits", "mnist", "2h", "30m", "1h30m", "90s", "0s", "-1h", "1e400",
         ".nan", "~", "~nobody/data", "/etc/passwd", "/", "a\nb", "a\u2028b", "sqlite:///x.db", "http://u:p@h:5000"]
NUMBERS = [0, 1, -1, 2, 3, 5, 16, 64, 1024, 100_000, 100_001, 2**32, 2**53 + 1, 10**30, 0.0, 0.1, 0.5, 1e-5,
           1e-300, 1e308, math.inf, -math.inf, math.nan]

# Mostly a spec's own words and numbers at the edges, so that most cases get past the syntax.
scalars = st.one_of(st.sampled_from(WORDS), st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.none(),
                    st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(max_size=8),
                 st.integers(-3, 3), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=3)), max_leaves=8)

# YAML's syntax, a spec's words and the hostile constructs, strung together at random.
TOKENS = ["name: x\n", "search:\n", "space:\n", "train:\n", "  ", "    ", "lr", "model", "epochs", ": ", "{", "}",
          "[", "]", ", ", "- ", "? ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!float ", "!!set ", "!!binary ",
          "!!timestamp ", "!!python/object:os.system ", "!custom ", "'", '"', "# c\n", "\n", "\t", "---\n", "...\n",
          ".inf", "-.inf", ".nan", "1e400", "9" * 5000, "2024-13-45", "0x1F", "0o17", "~", "null", "yes", "\x00",
          "\x07", "\u2028", "\ufeff", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "|\n", ">-\n", "uniform", "grid",
          "choice", "step", "[" * 80, "]" * 80, "a: &x [1, 2]\nb: [*x, *x, *x]\n", "\\u00e9", "\r\n"]
printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
yaml_texts = st.lists(st.one_of(st.sampled_from(TOKENS), st.sampled_from(TOKENS), st.sampled_from(KEYS), printable),
                      max_size=30).map("".join)


@st.composite
def mutated_specs(draw) -> Any:
    raw = copy.deepcopy(draw(st.sampled_from(BUILTIN_RAW)))
    for _ in range(draw(st.integers(1, 3))):
        _mutate(draw, raw)
    return raw


def _mutate(draw, node: dict | list) -> None:
    """One edit somewhere in the tree: descend a few levels, then drop, replace or insert."""
    while True:
        entries = node.items() if isinstance(node, dict) else enumerate(node)
        inner = [child for _, child in entries if isinstance(child, (dict, list))]
        if not inner or draw(st.integers(0, 3)) == 0:
            break
        node = draw(st.sampled_from(inner))
    operation = draw(st.sampled_from(["drop", "replace", "insert"]))
    if isinstance(node, dict):
        if operation == "insert" or not node:
            node[draw(keys)] = draw(values)
        elif operation == "drop":
            del node[draw(st.sampled_from(list(node)))]
        else:
            node[draw(st.sampled_from(list(node)))] = draw(values)
    elif operation == "insert" or not node:
        node.insert(draw(st.integers(0, len(node))), draw(values))
    elif operation == "drop":
        node.pop(draw(st.integers(0, len(node) - 1)))
    else:
        node[draw(st.integers(0, len(node) - 1))] = draw(values)


@st.composite
def spec_texts(draw) -> str:
    """Random YAML text, alone or spliced into a built-in spec."""
    junk = draw(yaml_texts)
    if draw(st.booleans()):
        return junk
    text = draw(st.sampled_from(BUILTIN_TEXTS))
    at = draw(st.integers(0, len(text)))
    return text[:at] + junk + text[at:]


def _validate_in_process(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["validate", str(path)])
    return status, out.getvalue(), err.getvalue()


def _check_outcome(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(content)
        try:
            spec = load_spec(path)
        except SpecError as error:
            problems = error.problems
            assert problems, "a SpecError names at least one problem"
            assert all(len(problem.splitlines()) == 1 and len(problem) <= 1000 for problem in problems), problems
        else:
            problems = None
            assert isinstance(spec, Spec)

        status, out, err = _validate_in_process(path)
        assert "Traceback" not in out + err
        assert sorted(p.name for p in Path(folder).iterdir()) == ["spec.yaml"], "validate writes nothing"
    if problems is None:
        assert status == 0 and err == "", err
        assert validate_spec(load_yaml(out)) == spec  # what `validate` prints is the same spec, resolved
    else:
        assert status == 2 and out == ""
        assert err.splitlines() == [f"error: {problem}" for problem in problems]


@settings(PROPERTY_SETTINGS, max_examples=MUTATED_CASES)
@given(raw=mutated_specs())
def test_mutated_builtin_specs_validate_or_fail_cleanly(raw: Any) -> None:
    _check_outcome(yaml.dump(raw, Dumper=DUMPER, sort_keys=False, allow_unicode=True).encode("utf-8"))


@settings(PROPERTY_SETTINGS, max_examples=TEXT_CASES)
@given(text=spec_texts())
def test_random_yaml_text_validates_or_fails_cleanly(text: str) -> None:
    _check_outcome(text.encode("utf-8", "surrogatepass"))
