"""Composing a manifest's YAML into nodes, fast enough for 10,000 repositories.

Validation needs nodes (they carry line numbers and show repeated keys), and
composing them was most of the time a big manifest took to load. Three things
make it cheap without changing a single result:

- libyaml's parser when PyYAML has it; anything it refuses is parsed again by
  the pure-Python parser, whose messages (and refusals) are the ones reported,
  so both builds of PyYAML say the same thing;
- the same implicit-tag rules as PyYAML's safe loader, looked up with less
  work per scalar (it runs once for each of the ~20 scalars of every entry);
- no garbage collection while the burst of nodes is allocated (see `gc_paused`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from re import Pattern
from typing import TYPE_CHECKING

import yaml
from yaml.nodes import Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = ["compose", "gc_paused", "implicit_tag"]

_RULES = Resolver.yaml_implicit_resolvers
_ANY_START: tuple[tuple[str, Pattern[str]], ...] = tuple(_RULES.get(None, ()))
_STR = str(Resolver.DEFAULT_SCALAR_TAG)
_BY_START: dict[str, tuple[tuple[str, Pattern[str]], ...]] = {
    start: (*rules, *_ANY_START) for start, rules in _RULES.items() if start is not None
}


def implicit_tag(value: str) -> str | None:
    """The tag PyYAML's safe loader gives `value` written as a plain scalar, if not a string."""
    for tag, pattern in _BY_START.get(value[:1], _ANY_START):
        if pattern.match(value):
            return tag
    return None


if TYPE_CHECKING:
    _Base = yaml.CSafeLoader
else:  # PyYAML built without libyaml still gains the quicker tag resolution
    _Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FastLoader(_Base):
    """libyaml's safe loader, resolving tags as `Resolver` does (safe loaders set no path
    resolvers, so only the implicit rules matter)."""

    def resolve(self, kind: type[Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            return (implicit[0] and implicit_tag(value)) or _STR
        if kind is SequenceNode:
            return str(Resolver.DEFAULT_SEQUENCE_TAG)
        return str(Resolver.DEFAULT_MAPPING_TAG)

    def descend_resolver(self, current_node: Node | None, current_index: object) -> None:
        """Path resolvers only: none are registered."""

    def ascend_resolver(self) -> None:
        """Path resolvers only: none are registered."""


def compose(text: str) -> Node | None:
    """The node tree of `text`; raises what `yaml.compose` with the safe loader raises."""
    try:
        return yaml.compose(text, Loader=_FastLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        pass  # reported below in the pure-Python parser's words
    return yaml.compose(text, Loader=yaml.SafeLoader)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Validation allocates a node tree and its repositories in one burst, without cycles
    to find: collecting during it (every 700 objects, each full pass walking the whole
    tree) tripled the time of a 10,000-repository manifest."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
