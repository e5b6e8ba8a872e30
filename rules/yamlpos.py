"""YAML with positions: plain Python values plus the line and column of every value and key.

Rule and rule-test files are edited by hand; an error must point at the line to fix, which
``yaml.safe_load`` forgets. We compose the node tree (the parser keeps marks) and build the
values ourselves with PyYAML's *safe* constructor, so no tag can create objects or run code.
Keys are taken as written (``on:`` stays the text 'on', not YAML 1.1's True); duplicate keys,
which YAML silently overwrites, are errors; aliases are followed with a budget, so a file of
nested aliases ("billion laughs") or a cycle cannot exhaust memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]

MAX_VALUES = 100_000  # values a file may expand to (aliases included)


@dataclass(frozen=True)
class Mark:
    """A 1-based place in a file."""

    line: int
    column: int


class YamlError(Exception):
    """The text is not YAML we accept; carries the place."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass
class Positioned:
    """A document's value and where each part of it is written."""

    value: Any
    values: dict[Path, Mark] = field(default_factory=dict)  # where the value at a path starts
    keys: dict[Path, Mark] = field(default_factory=dict)  # where the key naming a path is written

    def at(self, path: Path, *, key: bool = False) -> Mark:
        """The mark of ``path``, or of its nearest written ancestor (a missing key: its mapping)."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and end == len(path) and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return Mark(1, 1)


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def parse(text: str) -> Positioned:
    """One YAML document as values with positions; raise YamlError at the offending place."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        raise YamlError(f"not valid YAML: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:  # reader errors (control characters) carry a position too
        position = getattr(exc, "position", None)
        raise YamlError(f"not valid YAML: {exc}", Mark(1, (position or 0) + 1)) from None
    doc = Positioned(None)
    if root is None:
        return doc
    builder = _Builder(doc)
    doc.value = builder.build(root, ())
    return doc


class _Builder:
    def __init__(self, doc: Positioned) -> None:
        self.doc = doc
        self.constructor = SafeConstructor()
        self.budget = MAX_VALUES
        self.stack: set[int] = set()

    def build(self, node: Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise YamlError(f"the file expands to more than {MAX_VALUES:,} values (aliases?)", _mark(node))
        self.doc.values.setdefault(path, _mark(node))
        if id(node) in self.stack:
            raise YamlError("an alias refers to the value that contains it", _mark(node))
        if isinstance(node, ScalarNode):
            try:
                return self.constructor.construct_object(node)
            except yaml.YAMLError as exc:
                raise YamlError(f"cannot read this value: {getattr(exc, 'problem', exc)}", _mark(node)) from None
            except ValueError as exc:  # e.g. a timestamp with day 31 in February
                raise YamlError(f"cannot read this value: {exc}", _mark(node)) from None
        self.stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != "tag:yaml.org,2002:seq":
                    raise YamlError(f"unsupported tag {node.tag}", _mark(node))
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            raise YamlError("unsupported YAML node", _mark(node))  # pragma: no cover - composer makes only these
        finally:
            self.stack.discard(id(node))

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            raise YamlError(f"unsupported tag {node.tag}", _mark(node))
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError("merge keys (<<) are not supported; write the keys out", _mark(key_node))
            if not isinstance(key_node, ScalarNode):
                raise YamlError("a key must be plain text", _mark(key_node))
            key = key_node.value
            if key in result:
                first = self.doc.keys[(*path, key)]
                raise YamlError(f"key '{key}' is given twice (first at line {first.line})", _mark(key_node))
            self.doc.keys[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result
