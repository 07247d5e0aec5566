"""YAML read defensively: a spec is small, shallow, plain data written by hand.

PyYAML's SafeLoader stops code from running, not abuse: a document nested a few thousand levels
deep ends in RecursionError, a "billion laughs" of nested aliases expands to billions of values, and
a key written twice quietly keeps its last value. `load_yaml` refuses each while the document is
composed, before anything is built: depth and size are measured on the node graph, where an alias
is one shared node, never materialized. libyaml parses when it is there (on a hostile megabyte it is
about fifty times faster); composing and its checks stay in Python.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

MAX_DEPTH = 64  # nested levels, aliases expanded; a spec uses about six
MAX_NODES = 20_000  # keys and values, aliases expanded; a spec has a few hundred
_TAG = "tag:yaml.org,2002:"


class YamlRefused(yaml.MarkedYAMLError):
    """Valid YAML, or nearly, that a spec file never needs: refused with where and why."""

    def __init__(self, problem: str, mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _Checks(Composer, SafeConstructor):
    """Composer and constructor with the limits; mixed with a parser and a resolver below."""

    def _start_checks(self) -> None:
        self._depth = 0  # of the node being composed
        self._nodes = 0  # composed so far, each alias counted as the values it stands for

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            if not hasattr(node, "expanded_size"):  # its anchor is still open: it contains itself
                raise YamlRefused(f"the alias *{event.anchor} refers to a collection that contains it; "
                                  f"a spec is a tree", event.start_mark)
            self._count(node.expanded_size, self._depth + node.height, event.start_mark)
            return node
        self._depth += 1
        self._count(1, self._depth, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        children = _children(node)
        node.expanded_size = 1 + sum(child.expanded_size for child in children)
        node.height = 1 + max((child.height for child in children), default=0)
        return node

    def _count(self, nodes: int, depth: int, mark) -> None:
        self._nodes += nodes
        if depth > MAX_DEPTH:
            raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep (aliases expanded); "
                              f"a spec nests a few levels", mark)
        if self._nodes > MAX_NODES:
            raise YamlRefused(f"more than {MAX_NODES:,} keys and values (aliases expanded); "
                              f"a spec has a few hundred", mark)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, IndexError) as error:  # 2024-13-45, !!int abc, !!int "", 5000 digits
            raise ConstructorError(None, None, f"cannot read {node.tag.replace(_TAG, '!!')} value: {error}",
                                   node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _TAG + "merge":  # `<<: *defaults`: later keys override merged ones
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise YamlRefused(f"a key is a plain value (a name), not a {type(key).__name__}", key_node.start_mark)
            if key in first_line:
                raise YamlRefused(f"duplicate key {_shown(key)} (first at line {first_line[key] + 1}); "
                                  f"a key may appear once in a mapping", key_node.start_mark)
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    # Beyond JSON's types only what YAML 1.2 would read as text: a date stays the string written.
    def _as_text(self, node: Node) -> str:
        return self.construct_scalar(node)

    def _refuse(self, node: Node) -> None:
        raise YamlRefused(f"{node.tag.replace(_TAG, '!!')} is not a spec value; a spec holds strings, numbers, "
                          f"booleans, null, lists and mappings", node.start_mark)


_Checks.add_constructor(_TAG + "timestamp", _Checks._as_text)
for _kind in ("binary", "set", "omap", "pairs"):
    _Checks.add_constructor(_TAG + _kind, _Checks._refuse)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Loader(_Checks, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_checks()
else:  # pragma: no cover  (PyYAML built without libyaml: the pure-Python parser, slower)
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, _Checks, Resolver):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_checks()


def load_yaml(text: str) -> Any:
    """One YAML document as plain data; raises yaml.YAMLError (YamlRefused for what the limits refuse)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        _name_the_character(error, text)
        raise
    finally:
        loader.dispose()


def _name_the_character(error: yaml.MarkedYAMLError, text: str) -> None:
    """libyaml says "found character that cannot start any token" without the character (a tab, mostly)."""
    mark = error.problem_mark
    if error.problem != "found character that cannot start any token" or mark is None:
        return
    lines = text.splitlines()
    if mark.line < len(lines) and mark.column < len(lines[mark.line]):
        error.problem = f"found character {lines[mark.line][mark.column]!r} that cannot start any token"
