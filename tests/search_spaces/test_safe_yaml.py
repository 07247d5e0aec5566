"""Hostile spec files are refused while they are read, each with one line saying where and why.

Each case must finish at all to pass: a billion laughs that expanded, or nesting that recursed,
would run out of memory or end in RecursionError instead of matching the message.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpsearch.search_spaces._safe_yaml import MAX_DEPTH, MAX_NODES, load_yaml
from hpsearch.search_spaces.spec import MAX_FILE_BYTES, SpecError, load_spec


def _laughs(levels: int, fanout: int = 10) -> str:
    """The billion laughs: each level an anchored list of `fanout` aliases of the level below."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels)]
    return "name: laughs\n" + "\n".join(lines) + "\n"


def _deep_through_aliases(levels: int) -> str:
    """Shallow as written, deep once expanded: each anchor nests the one before ten levels down."""
    lines = ["a0: &a0 1"] + [f"a{i}: &a{i} {'[' * 10}*a{i - 1}{']' * 10}" for i in range(1, levels)]
    return "name: deep\n" + "\n".join(lines) + "\n"


HOSTILE = [
    pytest.param("[" * 5000 + "]" * 5000, r"refused at line 1, column 65: nested more than 64 levels deep",
                 id="deep-flow-nesting"),
    pytest.param("".join(" " * i + "a:\n" for i in range(1000)), r"refused at line 64, column 64: nested more than "
                 r"64 levels deep", id="deep-block-nesting"),
    pytest.param("- " * 3000 + "x\n", r"refused at line 1, column 129: nested more than 64 levels deep",
                 id="deep-block-sequence"),
    pytest.param(_deep_through_aliases(20), r"refused at line \d+, column \d+: nested more than 64 levels deep "
                 r"\(aliases expanded\)", id="deep-through-aliases"),
    pytest.param(_laughs(9), r"refused at line \d+, column \d+: more than 20,000 keys and values \(aliases "
                 r"expanded\); a spec has a few hundred", id="billion-laughs"),
    pytest.param(_laughs(30, fanout=2), r"refused at line \d+, column \d+: more than 20,000 keys and values",
                 id="doubling-laughs"),
    pytest.param("base: &b {x: 1, y: 2}\n" + "".join(f"m{i}: &m{i} {{<<: [*{'b' if i == 0 else f'm{i - 1}'}, "
                 f"*{'b' if i == 0 else f'm{i - 1}'}], k{i}: 1}}\n" for i in range(40)),
                 r"refused at line 11, column \d+: more than 20,000 keys and values", id="merge-key-bomb"),
    pytest.param("space: [" + "1, " * 300_000 + "1]\n", r"refused at line 1, column \d+: more than 20,000 keys and "
                 r"values", id="flat-list-of-300k"),
    pytest.param("a: &a [1, *a]\n", r"refused at line 1, column 11: the alias \*a refers to a collection that "
                 r"contains it; a spec is a tree", id="recursive-alias"),
    pytest.param("a: &a {b: *a}\n", r"refused .*the alias \*a refers to a collection that contains it",
                 id="recursive-alias-in-mapping"),
    pytest.param("name: a\nsearch: {}\nname: b\n", r"refused at line 3, column 1: duplicate key 'name' "
                 r"\(first at line 1\); a key may appear once in a mapping", id="duplicate-top-level-key"),
    pytest.param("name: a\nspace:\n  lr: 0.1\n  batch_size: 32\n  lr: 0.2\n", r"refused at line 5, column 3: "
                 r"duplicate key 'lr' \(first at line 3\)", id="duplicate-parameter"),
    pytest.param("name: a\nsearch: {seed: 1, seed: 2}\n", r"refused at line 2, column 19: duplicate key 'seed'",
                 id="duplicate-key-in-flow-mapping"),
    pytest.param("name: a\nspace:\n  model:\n    choice:\n      1: {}\n      true: {}\n",
                 r"refused at line 6, column 7: duplicate key True \(first at line 5\)", id="duplicate-1-and-true"),
    pytest.param("name: a\n? [a, b]\n: 1\n", r"refused at line 2, column 3: a key is a plain value \(a name\), not a "
                 r"list", id="list-as-key"),
    pytest.param("name: !!python/object/apply:os.system [ls]\n", r"invalid YAML at line 1, column 7: could not "
                 r"determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
                 id="python-object-tag"),
    pytest.param("name: a\ndescription: !!binary aGVsbG8=\n", r"refused at line 2, column 14: !!binary is not a "
                 r"spec value; a spec holds strings, numbers, booleans, null, lists and mappings", id="binary-tag"),
    pytest.param("name: a\nspace: {lr: !!set {0.1, 0.2}}\n", r"refused at line 2, column 13: !!set is not a spec "
                 r"value", id="set-tag"),
    pytest.param("name: a\nsearch: {seed: !!int abc}\n", r"invalid YAML at line 2, column 16: cannot read !!int "
                 r"value: invalid literal", id="int-tag-on-text"),
    pytest.param("name: a\nsearch: {seed: " + "9" * 5000 + "}\n", r"invalid YAML at line 2, column 16: cannot read "
                 r"!!int value: Exceeds the limit \(4300 digits\)", id="int-of-5000-digits"),
    pytest.param("name: a\n---\nname: b\n", r"invalid YAML at line 2, column 1: expected a single document in the "
                 r"stream at line 1, but found another document", id="two-documents"),
    pytest.param("name: a\nsearch: {seed: *nowhere}\n", r"invalid YAML at line 2, column 16: found undefined alias",
                 id="undefined-alias"),
    pytest.param("name: a\x07\n", r"invalid YAML: unacceptable character #x0007: control characters are not "
                 r"allowed", id="control-character"),
    pytest.param("name: [a, b\n", r"invalid YAML at line 2, column 1: while parsing a flow sequence at line 1, "
                 r"did not find expected ',' or '\]'", id="unclosed-flow-sequence"),
]


@pytest.mark.parametrize(("text", "pattern"), HOSTILE)
def test_a_hostile_file_is_refused_in_one_line(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)

    with pytest.raises(SpecError, match=f"^{re.escape(str(path))}: {pattern}") as excinfo:
        load_spec(path)

    assert len(excinfo.value.problems) == 1 and "\n" not in excinfo.value.problems[0]


def test_a_file_larger_than_a_spec_is_not_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: big\ndescription: '" + b"x" * (2 * MAX_FILE_BYTES) + b"'\n")

    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}: larger than 1,048,576 bytes, the most a spec "
                                        rf"file may be \(a spec is a few KB of YAML\)$"):
        load_spec(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_an_endless_device_is_not_read_to_its_end() -> None:
    with pytest.raises(SpecError, match=r"^/dev/zero: larger than 1,048,576 bytes"):
        load_spec("/dev/zero")


def test_a_name_too_long_for_the_file_system_is_one_line() -> None:
    with pytest.raises(SpecError, match=r"^a{197}\.\.\.: cannot read spec file \(File name too long\)$"):
        load_spec("a" * 5000)


def test_limits_allow_what_a_spec_needs() -> None:
    """Merge keys, aliases, a date-like text and nesting up to the limit all still load."""
    text = ("defaults: &defaults {epochs: 3, lr: 0.01}\n"
            "train:\n  <<: *defaults\n  lr: 0.02\n"  # a key after a merge overrides the merged one
            "description: 2024-01-01\n"  # stays the text written: YAML 1.2 has no dates
            "deep: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
            "many: &many [" + ", ".join(["1"] * 100) + "]\n"
            "again: [*many, *many, *many]\n")
    data = load_yaml(text)
    assert data["train"] == {"epochs": 3, "lr": 0.02}
    assert data["description"] == "2024-01-01"
    assert data["again"] == [[1] * 100] * 3
    assert MAX_NODES >= 10_000  # a grid may list this many values


def test_an_alias_expanded_beyond_the_limit_counts_every_use() -> None:
    """Shared nodes are counted as often as they are used, without being copied."""
    one_use = "a: &a [" + ", ".join(["1"] * (MAX_NODES // 3)) + "]\nb: *a\n"
    assert load_yaml(one_use)["b"] == [1] * (MAX_NODES // 3)
    with pytest.raises(Exception, match="more than 20,000 keys and values"):
        load_yaml(one_use + "c: [*a, *a]\n")
