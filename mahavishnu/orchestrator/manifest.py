"""The repository manifest (`repos.yaml`): which repositories Mahavishnu may touch.

Every repository path must resolve, symlinks followed, inside an allowed root:
the manifest is the boundary of what the server reads or runs commands in.
The value types live in `manifest_model`, the validator in
`manifest_validation`; this module loads the file and keeps it current while
the server runs. It knows nothing of HTTP, MCP or metrics: callers that care
about reloads register a listener.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread

from mahavishnu.orchestrator.allowed_roots import settings_hint
from mahavishnu.orchestrator.manifest_model import (
    MCP_KINDS,
    Manifest,
    McpKind,
    Problem,
    Repo,
)
from mahavishnu.orchestrator.manifest_validation import validate_manifest
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.observability import get_logger

__all__ = [
    "INIT_HINT",
    "MCP_KINDS",
    "Listener",
    "Manifest",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestStore",
    "McpKind",
    "Problem",
    "Repo",
    "StopSignal",
    "load_manifest",
    "validate_manifest",
]

log = get_logger(__name__)

INIT_HINT = "create it with `mahavishnu repos init ROOT`"


class ManifestError(ConfigurationError):
    """The manifest cannot be used; `problems` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem], message: str | None = None) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        summary = f"the manifest has {count} problem{'s' if count != 1 else ''}:"
        super().__init__(message or "\n  ".join([summary, *map(str, self.problems)]))


class ManifestNotFoundError(ManifestError):
    """No manifest file: the server runs with an empty manifest rather than refusing to start."""

    def __init__(self, path: Path) -> None:
        problem = Problem(str(path), None, f"file not found; {INIT_HINT}")
        super().__init__([problem], str(problem))


def load_manifest(path: Path, *, allowed_roots: Sequence[Path], roles: Collection[str]) -> Manifest:
    """Read and validate the manifest at `path`, raising ManifestError with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestNotFoundError(path) from None
    except OSError as exc:
        raise ManifestError([Problem(str(path), None, f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start} cannot be decoded)"
        raise ManifestError([Problem(str(path), None, reason)]) from None
    manifest, problems = validate_manifest(text, str(path), allowed_roots=allowed_roots, roles=roles)
    if manifest is None:
        raise ManifestError(problems)
    return manifest


class StopSignal(Protocol):
    """What `ManifestStore.watch` needs of a stop event; anyio.Event and asyncio.Event both fit."""

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[object]: ...


_Signature = tuple[int, int, int]
Listener = Callable[[Manifest | None], object]


@dataclass(frozen=True)
class _Outcome:
    """The result of reading a changed file, computed off the event loop."""

    signature: _Signature | None
    manifest: Manifest | None
    problems: tuple[Problem, ...] = ()
    missing: bool = False
    hints: tuple[str, ...] = ()
    """Where to change the settings some problems depend on (allowed_roots, roles)."""


def _signature(path: Path) -> _Signature | None:
    """(mtime_ns, size, inode): cheap to poll, and an atomic rename changes the inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class ManifestStore:
    """The current good manifest, reloaded when its file changes.

    A broken edit or a vanished file keeps the last good manifest serving and
    records why (`problems`, `exists`), so health checks can report it while
    requests keep working.
    """

    def __init__(self, path: Path, *, allowed_roots: Sequence[Path], roles: Collection[str]) -> None:
        self.path = path
        self._allowed_roots = tuple(allowed_roots)
        self._roles = tuple(roles)
        self._manifest = Manifest()
        self._problems: tuple[Problem, ...] | None = None
        self._exists = False
        self._checked = False
        self._signature: _Signature | None = None
        self._listeners: list[Listener] = []
        self.generation = 0
        """How many times a good manifest has been installed; 0 until the first."""
        self.loaded_at: datetime | None = None

    @classmethod
    def from_settings(cls, settings: MahavishnuSettings) -> ManifestStore:
        return cls(settings.repos_file, allowed_roots=settings.allowed_roots, roles=settings.roles)

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def problems(self) -> tuple[Problem, ...] | None:
        """Why the file on disk was rejected (the last good manifest is served meanwhile), else None."""
        return self._problems

    @property
    def exists(self) -> bool:
        """Whether the file existed at the last check."""
        return self._exists

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with the new manifest after each successful load, with None after a rejected edit.

        Listeners run on the thread that applies the change (the event loop's, under `watch`).
        """
        self._listeners.append(listener)

    def reload_if_changed(self) -> bool:
        """Reload if the file changed since the last check; True when a new manifest was installed."""
        outcome = self._read_if_changed()
        return outcome is not None and self._apply(outcome)

    async def watch(self, interval: float, stop: StopSignal | None = None) -> None:
        """Poll every `interval` seconds until `stop` is set (or the task is cancelled).

        The file I/O runs in a worker thread so a slow disk never stalls requests.
        """
        while stop is None or not stop.is_set():
            outcome = await anyio.to_thread.run_sync(self._read_if_changed)
            if outcome is not None:
                self._apply(outcome)
            if stop is None:
                await anyio.sleep(interval)
            else:
                with anyio.move_on_after(interval):
                    await stop.wait()

    def _read_if_changed(self) -> _Outcome | None:
        signature = _signature(self.path)
        if self._checked and signature == self._signature:
            return None
        try:
            manifest = load_manifest(self.path, allowed_roots=self._allowed_roots, roles=self._roles)
        except ManifestNotFoundError:
            return _Outcome(signature, None, missing=True)
        except ManifestError as exc:
            settings = sorted({problem.setting for problem in exc.problems if problem.setting})
            return _Outcome(signature, None, exc.problems, hints=tuple(map(settings_hint, settings)))
        return _Outcome(signature, manifest)

    def _apply(self, outcome: _Outcome) -> bool:
        self._checked = True
        self._signature = outcome.signature
        self._exists = not outcome.missing
        if outcome.missing:
            self._problems = None
            self._log_missing()
            return False
        if outcome.manifest is None:
            self._problems = outcome.problems
            log.warning(
                "manifest_rejected",
                path=str(self.path),
                generation=self.generation,
                problems=[str(problem) for problem in outcome.problems],
                hints=list(outcome.hints),
            )
            self._notify(None)
            return False
        self._manifest = outcome.manifest
        self._problems = None
        self.generation += 1
        self.loaded_at = datetime.now(UTC)
        log.info(
            "manifest_loaded", path=str(self.path), repos=len(self._manifest), generation=self.generation
        )
        self._notify(self._manifest)
        return True

    def _log_missing(self) -> None:
        if self.generation == 0:
            log.warning("manifest_missing", path=str(self.path), hint=INIT_HINT)
        else:
            log.warning("manifest_vanished", path=str(self.path))

    def _notify(self, manifest: Manifest | None) -> None:
        for listener in self._listeners:
            try:
                listener(manifest)
            except Exception:
                log.exception("manifest listener failed", listener=repr(listener))
