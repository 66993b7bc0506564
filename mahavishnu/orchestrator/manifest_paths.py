"""Manifest paths on disk: resolving them quickly, confining them, checking they are work trees.

A manifest of thousands of repositories lists them in a few parent folders;
`os.path.realpath` would `lstat` every component of every path again. Here
each parent folder is resolved once, and whether a repository's own folder is
a symlink is read from one listing of its parent (for a parent asked about
more than once), with the same result: symlinks anywhere are still followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from mahavishnu.orchestrator.manifest_model import Manifest, Problem

__all__ = ["RealPaths", "within", "worktree_problems"]

_SPECIAL_NAMES = frozenset({"", ".", ".."})


class RealPaths:
    """`os.path.realpath` with the parent folders of the paths it is asked about cached.

    Meant for one pass over one manifest: a folder replaced by a symlink while
    the pass runs may be seen either way, as with `realpath` itself.
    """

    def __init__(self) -> None:
        self._parents: dict[str, str] = {}
        self._asked: set[str] = set()
        self._listings: dict[str, dict[str, bool]] = {}

    def __call__(self, path: str) -> str:
        """The canonical path; raises what `os.path.realpath` raises (OSError, ValueError)."""
        parent, name = os.path.split(path)
        if name in _SPECIAL_NAMES or "/." in parent or "//" in parent:
            # "x/", "..", "." (or a hidden folder, rarely): realpath's own rules, which differ
            # from resolving the parent first when a symlink loop comes before a "..".
            return os.path.realpath(path)
        real_parent = self._parents.get(parent)
        if real_parent is None:
            real_parent = self._parents[parent] = os.path.realpath(parent)
        candidate = os.path.join(real_parent, name)
        return os.path.realpath(candidate) if self._is_link(real_parent, name) else candidate

    def _is_link(self, folder: str, name: str) -> bool:
        """`os.path.islink(folder/name)`, from one listing of `folder` once it is asked about twice.

        A name the listing lacks (missing, or spelled differently on a case-insensitive
        file system) is looked at directly, so no symlink goes unseen.
        """
        listing = self._listings.get(folder)
        if listing is None and folder in self._asked:
            listing = self._listings[folder] = _symlinks(folder)
        self._asked.add(folder)
        found = None if listing is None else listing.get(name)
        return os.path.islink(os.path.join(folder, name)) if found is None else found


def _symlinks(folder: str) -> dict[str, bool]:
    """Entry name -> whether it is a symlink (the file type the listing gives: no `lstat` each)."""
    found: dict[str, bool] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    found[entry.name] = entry.is_symlink()
                except OSError:
                    continue  # vanished meanwhile: looked at directly if asked about
    except OSError:
        pass  # unreadable (search-only) or gone: every name is looked at directly
    return found


def within(resolved: str, roots: Iterable[str]) -> bool:
    """Whether the resolved path is one of the resolved `roots` or inside one.

    Both sides are canonical (from realpath), so comparing strings is exact and
    far cheaper than building a PurePath per check.
    """
    for root in roots:
        prefix = root if root.endswith(os.sep) else root + os.sep
        if resolved == root or resolved.startswith(prefix):
            return True
    return False


def worktree_problems(manifest: Manifest, source: str) -> list[Problem]:
    """Repositories whose folder is missing or not a git work tree, located on their path's line.

    Not part of loading: folders come and go while a server runs (a clone
    in progress, an unmounted disk), and refusing the whole manifest for one
    would stop every other repository. `repos validate` reports them, since
    every workflow on such a repository would fail.
    """
    problems = []
    for repo in manifest:
        message = _worktree_problem(str(repo.path))
        if message is not None:
            line = manifest.line_of(repo)
            problems.append(Problem(source, line, f"repository {repo.name!r}: {message}"))
    return sorted(problems, key=lambda problem: problem.line or 0)


def _worktree_problem(path: str) -> str | None:
    if os.path.lexists(os.path.join(path, ".git")):
        # The common case in one system call: only a folder that can be searched has an entry.
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"path {path!r} does not exist"
    except NotADirectoryError:
        return f"path {path!r} does not exist (a folder above it is a file)"
    except OSError as exc:
        return f"path {path!r} cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(mode):
        return f"path {path!r} is not a folder"
    if _in_work_tree(os.path.realpath(path)):
        return None
    if _is_bare_repository(path):
        return f"path {path!r} is a bare git repository, which has no work tree to run commands in"
    return f"path {path!r} is not a git work tree (no .git in it or in a folder above it)"


def _in_work_tree(folder: str) -> bool:
    """Git looks for `.git` (a folder, or a file for worktrees and submodules) here and upwards."""
    while True:
        if os.path.lexists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def _is_bare_repository(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "HEAD")) and all(
        os.path.isdir(os.path.join(folder, name)) for name in ("objects", "refs")
    )
