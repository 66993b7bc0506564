"""Reading files whose path and type are chosen by someone else: the content of a repository.

Anyone who can push to a managed repository decides what `README.md` is: a symlink to
`/proc/self/environ` (the server's secrets), to `/etc/passwd`, into a repository of another tag
scope, a FIFO that blocks `open()` forever, a device that never ends. This module is the one
place the server opens such files, and it holds these rules:

* The path is resolved and must stay inside the repository's own resolved folder; a symlink
  pointing elsewhere *inside* the repository is followed, one leaving it is refused. Paths into
  the repository's `.git` folder are refused too (its `config` may hold remote credentials).
* The resolved path is opened one component at a time from a descriptor of the repository
  folder, each with `O_NOFOLLOW`, so swapping a component for a symlink between the check and
  the open (TOCTOU) makes the open fail instead of escaping.
* The final component is `lstat`-ed before the open, so a FIFO or device node is refused without
  ever being opened; it is opened with `O_NONBLOCK` anyway, and the descriptor is `fstat`-ed and
  must be the same regular file before a single byte is read.
* At most `max_bytes` are read, in a worker thread, under a time limit, so a slow or hung
  filesystem cannot hang the request. A dedicated capacity limiter keeps a flood of reads off
  the default thread pool that backups and the database share, and a gate counts threads the
  caller gave up on, refusing new reads while too many of them still hang.

Refusals carry a short `reason` that is safe to show a client: never file content, never a path
outside the repository.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath, PurePosixPath

import anyio
import anyio.to_thread

__all__ = [
    "FileAbsent",
    "FileRefused",
    "UntrustedFileError",
    "UntrustedReader",
    "read_head_sync",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_PATH", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symlink"),
)


class UntrustedFileError(Exception):
    """A file of untrusted content was not read; `reason` is safe to show (no content, no outside path)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileAbsent(UntrustedFileError):
    """Nothing is there: the caller may try another candidate."""


class FileRefused(UntrustedFileError):
    """Something is there but must not be read (wrong type, escapes, too slow)."""


def read_head_sync(root: Path, relative: str, max_bytes: int) -> bytes:
    """Blocking core of `UntrustedReader.read_head`: the first `max_bytes` of `root/relative`.

    Call it from a worker thread only; it never follows a symlink out of `root`, never opens
    anything but a regular file, but a slow filesystem can still make it slow.
    """
    checked = _checked_relative(relative)
    resolved = _resolved_root(root)
    with _opened_regular(resolved, _contained_parts(resolved, checked)) as fd:
        return _read_at_most(fd, max_bytes)


def _checked_relative(relative: str) -> PurePosixPath:
    """The path the *server* asks for must be plain and relative; this is a programming error otherwise."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"expected a plain relative path, got {relative!r}")
    return path


def _resolved_root(root: Path) -> Path:
    try:
        return root.resolve(strict=True)
    except FileNotFoundError:
        raise FileAbsent("the repository folder is missing") from None
    except (OSError, RuntimeError):
        raise FileRefused("the repository folder cannot be resolved") from None


def _contained_parts(root: Path, relative: PurePosixPath) -> tuple[str, ...]:
    """Resolve every symlink and return the target's parts below `root`, or refuse if it leaves it."""
    target = PurePath(os.path.realpath(root / relative))
    if not target.is_relative_to(root):
        raise FileRefused("a symlink leaving the repository")
    parts = target.relative_to(root).parts
    if parts and parts[0].casefold() == ".git":
        raise FileRefused("a path into the repository's .git folder")
    return parts or (".",)


@contextmanager
def _opened_regular(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """Open `root/parts` without following any symlink and yield the fd of a regular file."""
    dir_fd = _open_or_refuse(str(root), _DIR_FLAGS, None)
    try:
        for part in parts[:-1]:
            parent, dir_fd = dir_fd, _open_or_refuse(part, _DIR_FLAGS, dir_fd)
            os.close(parent)
        before = _lstat_regular(parts[-1], dir_fd)
        fd = _open_or_refuse(parts[-1], _FILE_FLAGS, dir_fd)
    finally:
        os.close(dir_fd)
    try:
        after = os.fstat(fd)
        _require_regular(after.st_mode)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise FileRefused("a file that changed while being opened")
        yield fd
    finally:
        os.close(fd)


def _lstat_regular(name: str, dir_fd: int) -> os.stat_result:
    """Look before opening: opening a FIFO or some devices blocks or has side effects."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _os_error(exc) from None
    _require_regular(st.st_mode)
    return st


def _require_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise FileRefused(f"{kind}, not a regular file")


def _open_or_refuse(name: str, flags: int, dir_fd: int | None) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_error(exc) from None


def _os_error(exc: OSError) -> UntrustedFileError:
    """Map an errno to absent or refused; ELOOP here means a component became a symlink (a race)."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileAbsent("no such file")
    if exc.errno == errno.ELOOP:
        return FileRefused("a path that changed while being opened")
    name = errno.errorcode.get(exc.errno or 0, "unknown error")
    return FileRefused(f"unreadable ({name})")


def _read_at_most(fd: int, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    remaining = max_bytes
    try:
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise _os_error(exc) from None
    return b"".join(chunks)


class _ThreadGate:
    """Counts worker threads really inside the filesystem, including those whose caller gave up.

    anyio releases a capacity limiter's token as soon as the caller is cancelled, while an
    abandoned thread may stay stuck in the kernel; without this count a hung filesystem would
    cost one more thread per request, without bound.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = 0
        self._lock = threading.Lock()

    def run(self, root: Path, relative: str, max_bytes: int) -> bytes:
        with self._lock:
            if self._busy >= self._limit:
                raise FileRefused("not read: too many earlier reads of repository files still hang")
            self._busy += 1
        try:
            return read_head_sync(root, relative, max_bytes)
        finally:
            with self._lock:
                self._busy -= 1


class UntrustedReader:
    """Reads heads of untrusted files off the event loop, bounded in time, size and threads.

    Make one per service (it owns a capacity limiter bound to the running event loop).
    """

    def __init__(self, *, concurrency: int = 4, max_threads: int = 16) -> None:
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._gate = _ThreadGate(max_threads)

    async def read_head(self, root: Path, relative: str, *, max_bytes: int, time_limit: float) -> bytes:
        """The first `max_bytes` of `root/relative`, or `FileAbsent` / `FileRefused` with a reason.

        Waiting for a free slot counts against `time_limit`: under a flood, a read fails fast
        rather than queueing without end.
        """
        with anyio.move_on_after(time_limit):
            return await anyio.to_thread.run_sync(
                self._gate.run,
                root,
                relative,
                max_bytes,
                abandon_on_cancel=True,
                limiter=self._limiter,
            )
        raise FileRefused(f"not read within {time_limit:g} s")
