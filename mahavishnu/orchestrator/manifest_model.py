"""Value types of the repository manifest: `Repo`, `Manifest` and `Problem`.

The field rules live here, as small functions returning a message, so the
YAML validator (which needs line numbers and every problem at once) and the
model (which guards code that builds repositories directly, like discovery)
apply the same rules and say the same thing.

The `mcp` field says how a repository relates to MCP: "server" (it provides an
MCP server), "client" (it consumes MCP servers), "none" (declared to have no
MCP part); null means nobody has said.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = [
    "MCP_KINDS",
    "Manifest",
    "McpKind",
    "Problem",
    "Repo",
    "name_problem",
    "package_problem",
    "path_problem",
    "role_problem",
    "tag_filter_problem",
    "tag_problem",
]

McpKind = Literal["server", "client", "none"]
MCP_KINDS: tuple[McpKind, ...] = ("server", "client", "none")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PACKAGE = re.compile(r"[^\s\x00-\x1f\x7f]{1,214}")


def name_problem(value: str, what: str = "name") -> str | None:
    """Why `value` cannot be a repository name (or nickname), or None if it can."""
    if _NAME.fullmatch(value):
        return None
    return f"{what} {value!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"


_TAG_RULE = "1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"


def tag_problem(value: str) -> str | None:
    if _TAG.fullmatch(value):
        return None
    return f"tag {value!r} must be {_TAG_RULE}"


def tag_filter_problem(value: str) -> str | None:
    """Why a tag filter can never match any repository, or None if it can.

    Filters ignore case (`Manifest.filter`), so only what no manifest may
    contain is refused: reported as a malformed tag rather than as "no
    repositories match", which would send the user looking for a repository.
    """
    if _TAG.fullmatch(value.lower()):
        return None
    return f"tag {value!r} is malformed, so no repository can have it: tags are {_TAG_RULE}"


def role_problem(value: str, roles: Collection[str]) -> str | None:
    """Roles are the settings' list (`roles`): anything else is a typo, in a manifest or a filter."""
    if value in roles:
        return None
    return f"unknown role {value!r}; expected one of: {', '.join(sorted(roles))}"


def package_problem(value: str) -> str | None:
    """Package names (PyPI, npm, crates) never contain spaces; one that does is a typo."""
    if _PACKAGE.fullmatch(value):
        return None
    return f"package {value!r} must be 1-214 characters without spaces or control characters"


def path_problem(value: str) -> str | None:
    """Relative paths would depend on the server's working directory, so they are refused."""
    if "\x00" in value:
        return "path contains a NUL character"
    if not os.path.isabs(value):
        return f"path {value!r} must be absolute (a leading '~' is not expanded)"
    return None


def _raise_if(message: str | None) -> None:
    if message is not None:
        raise ValueError(message)


class Repo(BaseModel):
    """One repository of the manifest; immutable so a loaded manifest can be shared freely."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    nickname: str | None = None
    package: str | None = None
    path: Path
    role: str | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    mcp: McpKind | None = None
    host: str | None = None
    """The build host whose worker runs this repository's runs (`engine: temporal`, `mahavishnu
    worker --host NAME`); unset: any worker of the shared queue (and the local engine ignores it)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        _raise_if(name_problem(value))
        return value

    @field_validator("nickname")
    @classmethod
    def _check_nickname(cls, value: str | None) -> str | None:
        if value is not None:
            _raise_if(name_problem(value, "nickname"))
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is not None:
            _raise_if(name_problem(value, "host"))
        return value

    @field_validator("package")
    @classmethod
    def _check_package(cls, value: str | None) -> str | None:
        if value is not None:
            _raise_if(package_problem(value))
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: Path) -> Path:
        _raise_if(path_problem(str(value)))
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            _raise_if(tag_problem(tag))
        if len(set(value)) != len(value):
            raise ValueError("tags must not repeat")
        return value

    def matches(self, query: str) -> bool:
        """Case-insensitive substring search over the fields a person would type."""
        needle = query.lower()
        haystack = (self.name, self.nickname or "", self.description, self.package or "")
        return any(needle in text.lower() for text in haystack)


def name_sort_key(name: str) -> tuple[str, str]:
    """The manifest's order: case-insensitive by name, ties broken by exact spelling."""
    return name.lower(), name


def _sort_key(repo: Repo) -> tuple[str, str]:
    return name_sort_key(repo.name)


@dataclass(frozen=True, init=False)
class Manifest:
    """The repositories, sorted by name so listings and diffs are stable.

    Lookups ignore case (names are unique regardless of case); a name wins over
    another repository's identical nickname, which validation refuses anyway.
    """

    repos: tuple[Repo, ...]
    _index: dict[str, Repo] = field(compare=False, repr=False)
    _lines: Mapping[str, int] = field(compare=False, repr=False)

    def __init__(self, repos: Iterable[Repo] = (), lines: Mapping[str, int] | None = None) -> None:
        """`lines`: the line each repository's path is written on, by name, when read from a file."""
        ordered = tuple(sorted(repos, key=_sort_key))
        index = {repo.nickname.lower(): repo for repo in ordered if repo.nickname}
        index.update((repo.name.lower(), repo) for repo in ordered)
        object.__setattr__(self, "repos", ordered)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_lines", {} if lines is None else lines)

    def __len__(self) -> int:
        return len(self.repos)

    def __iter__(self) -> Iterator[Repo]:
        return iter(self.repos)

    def find(self, name_or_nickname: str) -> Repo | None:
        return self._index.get(name_or_nickname.lower())

    def line_of(self, repo: Repo) -> int | None:
        """Where `repo`'s path is written in the file it was read from, if it was."""
        return self._lines.get(repo.name)

    def roles(self) -> dict[str, tuple[str, ...]]:
        """Role -> names of its repositories (the count is the length); unassigned repos are left out."""
        names: dict[str, list[str]] = {}
        for repo in self.repos:
            if repo.role is not None:
                names.setdefault(repo.role, []).append(repo.name)
        return {role: tuple(names[role]) for role in sorted(names)}

    def filter(
        self, tag: str | None = None, role: str | None = None, query: str | None = None
    ) -> tuple[Repo, ...]:
        """The repositories matching every criterion given; None means "any"."""
        return tuple(
            repo
            for repo in self.repos
            if (tag is None or tag.lower() in repo.tags)
            and (role is None or repo.role == role)
            and (query is None or repo.matches(query))
        )

    def paths(self, tag: str | None = None) -> tuple[Path, ...]:
        return tuple(repo.path for repo in self.filter(tag=tag))


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a manifest file, located for a person to fix."""

    file: str
    line: int | None
    message: str
    setting: str | None = None
    """The setting that decides this (allowed_roots, roles): the fix may belong there instead."""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"
