"""Find the git repositories under a folder and describe them as manifest entries.

This is what `mahavishnu repos init` runs, so nobody has to type a manifest of
dozens of repositories by hand. Everything inferred (package, tags,
description) is a starting point for the person to edit, not a truth.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from mahavishnu.orchestrator.manifest_model import Manifest, Repo, package_problem

__all__ = ["DEFAULT_ROLE", "discover_repositories", "render_manifest", "write_manifest"]

DEFAULT_ROLE = "tool"
"""The role given to discovered repositories: one of DEFAULT_ROLES, and the least presumptuous."""

SKIPPED_FOLDERS = frozenset({"node_modules"})
"""Never searched (besides hidden folders, which covers .git, .venv, .tox and the like)."""

TAG_MARKERS: tuple[tuple[str, str], ...] = (
    ("pyproject.toml", "python"),
    ("setup.py", "python"),
    ("package.json", "javascript"),
    ("tsconfig.json", "typescript"),
    ("Cargo.toml", "rust"),
    ("go.mod", "go"),
)
DESCRIPTION_CHARS = 200
README_BYTES = 64 * 1024
_NOT_PROSE = ("#", "<", "!", "[!", "===", "---", "|", ">")
_FENCES = ("```", "~~~")
_UNDERLINE = re.compile(r"=+|-+")
"""A line of = or - under text makes that text a heading."""
_UNSAFE_BREAKS = frozenset("\x85\u2028\u2029")
_NAME_JUNK = re.compile(r"[^A-Za-z0-9._-]+")
HEADER = (
    "# Repositories Mahavishnu manages. Written by `mahavishnu repos init`; edit freely.\n"
    "# Required: name, path (absolute). Optional: nickname, package, role, tags (lowercase),\n"
    "# description, mcp (server | client | none | null when unknown).\n"
)


def discover_repositories(root: Path, max_depth: int = 3, *, role: str | None = DEFAULT_ROLE) -> list[Repo]:
    """Every git repository at most `max_depth` folders below `root` (0: only `root` itself), by name.

    A repository's own subfolders are not searched (submodules and vendored
    checkouts belong to it), nor are hidden folders or node_modules.
    Symlinked folders are not followed, so a link cannot make the search loop.
    """
    folders = sorted(_git_folders(root.resolve(), max_depth))
    names = _unique_names(folders)
    repos = [_describe(folder, name, role) for folder, name in zip(folders, names, strict=True)]
    return list(Manifest(repos).repos)


class _Dumper(yaml.SafeDumper):
    """PyYAML turns NEL and Unicode line separators into plain breaks unless it escapes them,
    which it does only in double quotes; strings holding one are written that way."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(char in _UNSAFE_BREAKS for char in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_manifest(repos: Iterable[Repo]) -> str:
    """YAML for `repos`, sorted by name, that reads back as the same manifest."""
    entries = [repo.model_dump(mode="json") for repo in Manifest(repos).repos]
    body = yaml.dump({"repos": entries}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    return HEADER + body


def write_manifest(path: Path, repos: Iterable[Repo]) -> None:
    """Write through a temporary file and a rename, so a server watching `path` never reads half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(render_manifest(repos), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _git_folders(folder: Path, depth: int) -> Iterator[Path]:
    """A `.git` directory or file (worktrees, submodules) marks a repository."""
    if (folder / ".git").exists():
        yield folder
        return
    if depth <= 0:
        return
    try:
        with os.scandir(folder) as scan:
            children = sorted(entry.name for entry in scan if _searchable(entry))
    except OSError:
        return
    for child in children:
        yield from _git_folders(folder / child, depth - 1)


def _searchable(entry: os.DirEntry[str]) -> bool:
    hidden = entry.name.startswith(".") or entry.name in SKIPPED_FOLDERS
    return not hidden and entry.is_dir(follow_symlinks=False)


def _sanitized(folder_name: str) -> str:
    """The folder name made into a valid repository name (see `name_problem`)."""
    return _NAME_JUNK.sub("-", folder_name).strip("._-")[:100] or "repo"


def _unique_names(folders: list[Path]) -> list[str]:
    """Names for `folders`, suffixing -2, -3... on clashes (ignoring case, like the validator)."""
    taken: set[str] = set()
    names = []
    for folder in folders:
        base = name = _sanitized(folder.name)
        counter = 1
        while name.lower() in taken:
            counter += 1
            suffix = f"-{counter}"
            name = base[: 100 - len(suffix)] + suffix
        taken.add(name.lower())
        names.append(name)
    return names


def _describe(folder: Path, name: str, role: str | None) -> Repo:
    tags = sorted({tag for marker, tag in TAG_MARKERS if (folder / marker).is_file()})
    return Repo(
        name=name,
        package=_package(folder),
        path=folder,
        role=role,
        tags=tuple(tags),
        description=_readme_summary(folder),
    )


def _package(folder: Path) -> str:
    """The name the project publishes under, when its metadata says so."""
    for declared in (_pyproject_name(folder), _package_json_name(folder)):
        if declared is not None and package_problem(declared) is None:
            return declared
    return _sanitized(folder.name).replace("-", "_")


def _pyproject_name(folder: Path) -> str | None:
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) else None


def _package_json_name(folder: Path) -> str | None:
    try:
        data = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _readme_summary(folder: Path) -> str:
    """The first line of prose in README.md: headings, badges, HTML, tables, quotes and code are skipped."""
    try:
        with (folder / "README.md").open(encoding="utf-8", errors="replace") as readme:
            text = readme.read(README_BYTES)
    except OSError:
        return ""
    lines = [raw.strip() for raw in text.splitlines()]
    in_code = False
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith(_FENCES):
            in_code = not in_code
        elif line and not in_code and not line.startswith(_NOT_PROSE) and not _UNDERLINE.fullmatch(following):
            return line[:DESCRIPTION_CHARS].rstrip()
    return ""
