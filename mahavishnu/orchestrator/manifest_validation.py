"""Validation of a manifest's text: every problem at once, each on its YAML line.

The text is composed into YAML nodes rather than loaded into Python objects,
because only nodes carry line numbers and only nodes see duplicate keys. Node
tags tell strings from numbers or booleans without running any constructor,
so odd input (bad dates, huge integers, custom tags) becomes a problem report
instead of an exception.

Nodes are costly, though, and only needed to word problems: a manifest that
`manifest_fast` can read exactly as PyYAML would is checked by the same rules
from plain values first, and composed only when something is wrong with it
(then every problem is found and worded on the nodes, as if the quick
reading had never happened) or when a line number is asked for.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path

import yaml

from mahavishnu.orchestrator.manifest_fast import PlainEntry, plain_repos
from mahavishnu.orchestrator.manifest_model import (
    MCP_KINDS,
    Manifest,
    Problem,
    Repo,
    name_problem,
    package_problem,
    path_problem,
    role_problem,
    tag_problem,
)
from mahavishnu.orchestrator.manifest_paths import RealPaths, within
from mahavishnu.orchestrator.manifest_yaml import compose, gc_paused

__all__ = ["validate_manifest", "validate_nodes"]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_KINDS = {
    _STR: "a string",
    _NULL: "null",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:merge": "a merge key (<<), which is not supported",
}
_FIELDS = tuple(Repo.model_fields)
_REQUIRED = ("name", "path")


class _Bad:
    """Marks a field whose problem has already been reported."""


_BAD = _Bad()


def validate_manifest(
    text: str, source: str, *, allowed_roots: Iterable[Path], roles: Collection[str]
) -> tuple[Manifest | None, list[Problem]]:
    """Check `text` (read from `source`, used in messages); never raises.

    Returns the manifest and no problems, or None and every problem found,
    ordered by line.
    """
    roots = [os.path.realpath(root) for root in allowed_roots]
    with gc_paused():
        manifest = _validate_plain(text, source, roots, roles)
        if manifest is not None:
            return manifest, []
        return _validate_nodes(text, source, roots, roles)


def validate_nodes(
    text: str, source: str, *, allowed_roots: Iterable[Path], roles: Collection[str]
) -> tuple[Manifest | None, list[Problem]]:
    """`validate_manifest` on PyYAML's nodes alone: the reference its quick path must agree with."""
    roots = [os.path.realpath(root) for root in allowed_roots]
    with gc_paused():
        return _validate_nodes(text, source, roots, roles)


def _validate_plain(text: str, source: str, roots: list[str], roles: Collection[str]) -> Manifest | None:
    """The manifest if `plain_repos` can read `text` and it has no problem, else None."""
    # Like the node tree, the plain values die in here, before collection resumes.
    plain = plain_repos(text)
    if plain is None:
        return None
    checker = _Checker(source, roots, roles)
    entries = checker.check_plain(plain)
    return None if checker.problems else Manifest(_repos(entries), _Lines(text))


def _validate_nodes(
    text: str, source: str, roots: list[str], roles: Collection[str]
) -> tuple[Manifest | None, list[Problem]]:
    # The node tree dies in here, before collection resumes: a collection finding it
    # alive would walk all of it.
    checker = _Checker(source, roots, roles)
    entries = checker.check(text)
    if checker.problems:
        return None, sorted(checker.problems, key=lambda problem: problem.line or 0)
    repos = _repos(entries)
    lines = {repo.name: entry.line_of("path") for repo, entry in zip(repos, entries, strict=True)}
    return Manifest(repos, lines), []


def _repos(entries: list[_Entry]) -> list[Repo]:
    return [Repo.model_validate(entry.present()) for entry in entries]


class _Lines(Mapping[str, int]):
    """The line of each repository's path, found from the nodes the first time one is asked for.

    Only messages about a repository's folder need them (`worktree_problems`), so a
    manifest read by the quick path keeps its text instead of composing it up front.
    """

    def __init__(self, text: str) -> None:
        self._text: str | None = text
        self._lines: dict[str, int] = {}

    def _computed(self) -> dict[str, int]:
        if self._text is not None:
            with gc_paused():
                self._lines = _path_lines(compose(self._text))
            self._text = None
        return self._lines

    def __getitem__(self, name: str) -> int:
        return self._computed()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._computed())

    def __len__(self) -> int:
        return len(self._computed())


def _path_lines(root: yaml.Node | None) -> dict[str, int]:
    """Name -> line of the path of each entry of a manifest known to be valid."""
    assert isinstance(root, yaml.MappingNode)
    lines = {}
    for _, repos in root.value:
        for entry in repos.value:
            fields = {key.value: value for key, value in entry.value}
            lines[fields["name"].value] = _line(fields["path"])
    return lines


class _Entry:
    """The fields of one repository that passed their own checks, and the node of every field given."""

    __slots__ = ("line", "nodes", "values")

    def __init__(self, line: int) -> None:
        self.line = line
        self.values: dict[str, object] = {}
        self.nodes: dict[str, yaml.Node] = {}

    def line_of(self, name: str) -> int:
        """The line of a field's value (the entry's own for one read by `check_plain`, without nodes)."""
        node = self.nodes.get(name)
        return self.line if node is None else _line(node)

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    def present(self) -> dict[str, object]:
        """Null means "the default" for every optional field."""
        return {name: value for name, value in self.values.items() if value is not None}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, f"a value tagged {node.tag}")


def _is(node: yaml.Node, tag: str) -> bool:
    return node.tag == tag and isinstance(node, yaml.ScalarNode)


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    if exc.problem and exc.context:
        return f"{exc.problem} ({exc.context})"
    return exc.problem or exc.context or "unreadable"


class _Checker:
    """Collects problems while walking the node tree of one manifest (`check`), or its plain
    values (`check_plain`, where a problem only means the nodes must be checked)."""

    def __init__(self, source: str, roots: list[str], roles: Collection[str]) -> None:
        self.source = source
        self.roots = roots
        self.roles = frozenset(roles)
        self.problems: list[Problem] = []
        self.rules: dict[str, Callable[[str], str | None]] = {
            "name": name_problem,
            "nickname": lambda value: name_problem(value, "nickname"),
            "package": package_problem,
            "path": path_problem,
            "role": lambda value: role_problem(value, self.roles),
            "description": lambda value: None,
            "mcp": _mcp_problem,
            "host": lambda value: name_problem(value, "host"),
        }

    def add(self, line: int | None, message: str, setting: str | None = None) -> None:
        self.problems.append(Problem(self.source, line, message, setting))

    def check(self, text: str) -> list[_Entry]:
        root = self._compose(text)
        repos = None if root is None else self._repos_node(root)
        if repos is None:
            return []
        return self._across([entry for node in repos.value if (entry := self._entry(node)) is not None])

    def check_plain(self, repos: list[PlainEntry]) -> list[_Entry]:
        """The same rules on values read by `plain_repos` (known fields; strings, null, tag lists).

        Entries have no nodes, so problems carry no useful line: they are only a sign
        that the nodes must be checked.
        """
        return self._across([self._plain_entry(fields) for fields in repos])

    def _across(self, entries: list[_Entry]) -> list[_Entry]:
        names = self._check_names(entries)
        self._check_nicknames(entries, names)
        self._check_paths(entries)
        return entries

    # --- structure ------------------------------------------------------------

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            root = compose(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.add(None if mark is None else mark.line + 1, f"invalid YAML: {_yaml_reason(exc)}")
            return None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            self.add(line, f"invalid YAML: character U+{exc.character:04X} is not allowed")
            return None
        except RecursionError:
            self.add(None, "invalid YAML: nested too deeply")
            return None
        if root is None:
            self.add(1, "the file is empty; expected a top-level 'repos:' list")
        return root

    def _pairs(self, node: yaml.MappingNode) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """Key, key node and value of each entry, reporting odd and repeated keys."""
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not _is(key, _STR):
                self.add(_line(key), f"keys must be plain strings, not {_describe(key)}")
            elif (first := seen.setdefault(key.value, key)) is not key:
                self.add(_line(key), f"{key.value!r} is given twice (first on line {_line(first)})")
            else:
                yield key.value, key, value

    def _repos_node(self, root: yaml.Node) -> yaml.SequenceNode | None:
        if not isinstance(root, yaml.MappingNode):
            self.add(
                _line(root), f"the top level must be a mapping with a 'repos:' list, not {_describe(root)}"
            )
            return None
        repos: yaml.Node | None = None
        for key, key_node, value in self._pairs(root):
            if key == "repos":
                repos = value
            else:
                self.add(_line(key_node), f"unknown top-level key {key!r}; only 'repos' is allowed")
        if repos is None:
            self.add(_line(root), "missing the top-level 'repos:' list")
        elif not isinstance(repos, yaml.SequenceNode):
            hint = " (write 'repos: []' for an empty manifest)" if _is(repos, _NULL) else ""
            self.add(_line(repos), f"'repos' must be a list, not {_describe(repos)}{hint}")
            return None
        return repos

    # --- one repository ---------------------------------------------------------

    def _entry(self, node: yaml.Node) -> _Entry | None:
        if not isinstance(node, yaml.MappingNode):
            self.add(
                _line(node), f"each repository must be a mapping with name and path, not {_describe(node)}"
            )
            return None
        entry = _Entry(_line(node))
        for key, key_node, value_node in self._pairs(node):
            if key not in _FIELDS:
                self.add(_line(key_node), _unknown_field(key))
                continue
            entry.nodes[key] = value_node
            value: object
            if key == "tags":
                value = self._tags(value_node)
            else:
                text = self._string(value_node, key, nullable=key not in _REQUIRED)
                value = text if isinstance(text, _Bad) else self._text(key, text, _line(value_node))
            if value is not _BAD:
                entry.values[key] = value
        self._required(entry, entry.nodes)
        return entry

    def _plain_entry(self, fields: PlainEntry) -> _Entry:
        entry = _Entry(0)
        for key, value in fields.items():
            checked: tuple[str, ...] | str | _Bad | None
            if isinstance(value, list):  # tags: the one list `plain_repos` lets through
                kept: list[str] = []
                checked = tuple(kept) if all(self._tag(tag, 0, kept) for tag in value) else _BAD
            elif value is None and key in _REQUIRED:
                self.add(0, f"{key} must be a string, not null")
                continue
            else:
                checked = self._text(key, value, 0)
            if checked is not _BAD:
                entry.values[key] = checked
        self._required(entry, fields)
        return entry

    def _required(self, entry: _Entry, given: Collection[str]) -> None:
        for required in _REQUIRED:
            if required not in given:
                self.add(entry.line, f"repository is missing the required field {required!r}")

    def _string(self, node: yaml.Node, what: str, *, nullable: bool) -> str | _Bad | None:
        if _is(node, _STR):
            return node.value  # type: ignore[no-any-return]
        if nullable and _is(node, _NULL):
            return None
        self.add(_line(node), f"{what} must be a string, not {_describe(node)}")
        return _BAD

    def _text(self, key: str, value: str | None, line: int) -> str | _Bad | None:
        """A field's value (null where the field allows it) after its rule."""
        if value is not None and (message := self.rules[key](value)) is not None:
            self.add(line, message, "roles" if key == "role" else None)
            return _BAD
        return value

    def _tags(self, node: yaml.Node) -> tuple[str, ...] | _Bad | None:
        if _is(node, _NULL):
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.add(_line(node), f"tags must be a list of strings, not {_describe(node)}")
            return _BAD
        kept: list[str] = []
        bad = False
        for item in node.value:
            tag = self._string(item, "each tag", nullable=False)
            if not (isinstance(tag, str) and self._tag(tag, _line(item), kept)):
                bad = True
        return _BAD if bad else tuple(kept)

    def _tag(self, tag: str, line: int, kept: list[str]) -> bool:
        """Whether `tag` passes the tag rule and is not in `kept` (then it is added to it)."""
        message = tag_problem(tag) or (f"tag {tag!r} is listed twice" if tag in kept else None)
        if message is None:
            kept.append(tag)
            return True
        self.add(line, message)
        return False

    # --- across repositories ----------------------------------------------------

    def _check_names(self, entries: list[_Entry]) -> dict[str, _Entry]:
        """Names are unique ignoring case, so lookups can ignore case too."""
        first: dict[str, _Entry] = {}
        for entry in entries:
            name = entry.text("name")
            if name is None:
                continue
            owner = first.setdefault(name.lower(), entry)
            if owner is not entry:
                self.add(
                    entry.line_of("name"),
                    f"duplicate name {name!r} (first used on line {owner.line_of('name')})",
                )
        return first

    def _check_nicknames(self, entries: list[_Entry], names: dict[str, _Entry]) -> None:
        first: dict[str, _Entry] = {}
        for entry in entries:
            nickname = entry.text("nickname")
            if nickname is None:
                continue
            line = entry.line_of("nickname")
            owner = names.get(nickname.lower())
            if owner is not None and owner is not entry:
                self.add(line, f"nickname {nickname!r} is the name of the repository on line {owner.line}")
                continue
            previous = first.setdefault(nickname.lower(), entry)
            if previous is not entry:
                self.add(
                    line,
                    f"duplicate nickname {nickname!r} (first used on line {previous.line_of('nickname')})",
                )

    def _check_paths(self, entries: list[_Entry]) -> None:
        """Compare and confine resolved paths, so '..' and symlinks cannot hide a folder."""
        first: dict[str, _Entry] = {}
        realpath = RealPaths()
        for entry in entries:
            path = entry.text("path")
            if path is None:
                continue
            line = entry.line_of("path")
            try:
                resolved = realpath(path)
            except (OSError, ValueError) as exc:
                self.add(line, f"cannot resolve path {path!r}: {exc}")
                continue
            if not within(resolved, self.roots):
                roots = ", ".join(self.roots) or "none are configured"
                message = f"path {path!r} resolves to {resolved}, outside the allowed roots ({roots})"
                self.add(line, message, "allowed_roots")
            owner = first.setdefault(resolved, entry)
            if owner is not entry:
                self.add(
                    line, f"path {path!r} is the same folder ({resolved}) as on line {owner.line_of('path')}"
                )


def _mcp_problem(value: str) -> str | None:
    if value in MCP_KINDS:
        return None
    return f"mcp must be one of {', '.join(MCP_KINDS)} (or null), not {value!r}"


def _unknown_field(key: str) -> str:
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(_FIELDS)}"
    return f"unknown field {key!r}{hint}"
