"""A quick reading of a manifest's YAML for the common case, never a different answer.

Composing PyYAML nodes (`manifest_yaml`) is most of the time a big manifest
takes to load, and nodes are only needed to word problems with their lines.
`yaml_rs` (a Rust parser) reads a 10,000-repository manifest in a fifth of the
time, but it follows YAML 1.2 where PyYAML's safe loader follows YAML 1.1
(`no` is a string, `0o17` a number, `1:20` a string, `<<` an ordinary key,
tags are dropped, NEL and U+2028 are not line breaks...). So its result is
used only when it cannot differ from PyYAML's:

- the text has none of what the two treat differently or what could crash a
  parser: characters PyYAML refuses or reads as line breaks, tabs, a BOM,
  tags, anchors and aliases, directives, deep nesting (`_UNSUPPORTED`);
- the result has the manifest's shape: a mapping whose one key is `repos`,
  a list of mappings whose keys are field names, and values that are strings
  or null (lists of strings for `tags`), with no repeated key anywhere;
- no string, as written, would be read by PyYAML as anything but a string:
  none matches an implicit tag rule of its safe loader (bool, int, float,
  null, timestamp, merge, value), quoted or not.

Anything else returns None and the node path decides, so falling back costs
time but never changes an answer.
"""

from __future__ import annotations

import re

import yaml_rs

from mahavishnu.orchestrator.manifest_model import Repo
from mahavishnu.orchestrator.manifest_yaml import implicit_tag

__all__ = ["PlainEntry", "plain_repos"]

PlainEntry = dict[str, str | list[str] | None]
"""Field name -> a string, None, or (for `tags`) a list of strings."""

_FIELDS = frozenset(Repo.model_fields)
_NESTING = 64
"""Indentation and block indicators (`- `, `? `, `: `) starting a line: yaml_rs recurses
without a limit on block nesting (tens of thousands of levels crash the process);
flow nesting it refuses past 256 levels itself."""

# Outside what PyYAML accepts as printable, or a line break in YAML 1.1 only (NEL, U+2028,
# U+2029), or a tab (the two differ on where one may stand), or a BOM.
_ODD_CHARACTER = re.compile(
    "[^\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# A tag (yaml_rs drops it), an anchor or an alias where a node may start, or a directive.
_MARK = re.compile(r"(?:^|[\s\[\]{},:\"'])[!&*]|^%", re.MULTILINE)
_MARK_CHARACTERS = "!&*%"
_DEEP = re.compile(rf"\n[ ?:-]{{{_NESTING}}}")  # searched in "\n" + text: a leading "\n" is quick


def _unsupported(text: str) -> bool:
    """Whether `text` may hold what the two parsers read differently, or too deep a nesting."""
    if any(mark in text for mark in _MARK_CHARACTERS) and _MARK.search(text):
        return True  # the quick test first: these characters are rare in manifests
    return bool(_ODD_CHARACTER.search(text) or _DEEP.search("\n" + text))


def plain_repos(text: str) -> list[PlainEntry] | None:
    """The entries of `repos` as PyYAML's safe loader reads them, or None when that is not certain."""
    if _unsupported(text):
        return None
    try:
        data = yaml_rs.loads(
            text, parse_datetime=False, duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.Error
        )
    except yaml_rs.YAMLDecodeError:
        return None
    if type(data) is not dict or list(data) != ["repos"]:
        return None
    repos = data["repos"]
    if type(repos) is not list or not all(type(entry) is dict and _plain(entry) for entry in repos):
        return None
    return repos


def _plain(entry: dict[object, object]) -> bool:
    for key, value in entry.items():
        if key not in _FIELDS:  # also refuses every key that is not a string
            return False
        if value is None:
            continue
        if key == "tags":
            if type(value) is not list or not all(_string(item) for item in value):
                return False
        elif not _string(value):
            return False
    return True


def _string(value: object) -> bool:
    return type(value) is str and implicit_tag(value) is None
