"""Running one attempt of a command: its own process group, a timeout, bounded output.

The command runs as an argv list (never a shell) in the repository folder,
in a new session so the whole process group can be stopped: SIGTERM first,
SIGKILL after a grace period. Output (stdout and stderr together) is kept
twice, both bounded: the tail in memory for the database and the head in the
attempt's log file up to a byte cap. The log file is written when the output
outgrows the tail (as it comes) and for every attempt that did not succeed (at
its end: its whole output, or why it could not start), so each earlier attempt
of a run, whose tail the database no longer keeps, has its log. A successful
attempt with a short output has no file: all of it is the tail (a file per run
would cost the fan-out a file creation per repository).

This is the engine's hot path. Each attempt runs start to finish in one of
the engine's worker threads (fork, read, wait: blocking calls that release
the GIL). A cancel reaches the process group through a hook, from any thread.

A process group must not outlive its engine: `on_start` hands each new group
to `groups.GroupGuard`, which writes it down for the reaper.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mahavishnu.orchestrator.workflows.decisions import AttemptResult
from mahavishnu.orchestrator.workflows.local.groups import signal_group

__all__ = ["Cancellation", "ProcessResult", "run_attempt"]

_CHUNK = 65536
_DRAIN_SECONDS = 2.0


ProcessResult = AttemptResult
"""What one attempt came to: the engine-neutral `decisions.AttemptResult`, so recording and
the retry, breaker and dead-letter decisions never depend on this executor."""


class Cancellation:
    """A request to stop one run, which may come before or while it runs, from any thread."""

    def __init__(self) -> None:
        self.requested = False
        self._hook: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            if self.requested:
                return
            self.requested = True
            hook = self._hook
        if hook is not None:
            hook()

    def bind(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hook = hook
            requested = self.requested
        if requested:
            hook()


class _Output:
    """Collects a stream into a bounded tail and, past the tail's size or for a failed attempt,
    a bounded log file."""

    def __init__(self, tail_bytes: int, log_path: Path | None, log_max_bytes: int) -> None:
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._tail_bytes = tail_bytes
        self._head: list[bytes] | None = []  # everything so far, until the log file takes over
        self._log_path = log_path
        self._log: BinaryIO | None = None
        self._log_room = log_max_bytes
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._tail.append(chunk)
        self._tail_size += len(chunk)
        while self._tail_size - len(self._tail[0]) >= self._tail_bytes:
            self._tail_size -= len(self._tail.popleft())
        if self._head is None:
            self._write(chunk)
            return
        self._head.append(chunk)
        if self.total > self._tail_bytes:
            self._spill()

    def _spill(self) -> None:
        """From now on the output goes to the log file, starting with what was held back."""
        pending, self._head = self._head or [], None
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("wb")
        for piece in pending:
            self._write(piece)

    def _write(self, chunk: bytes) -> None:
        if self._log is None or self._log_room <= 0:
            return
        piece = chunk[: self._log_room]
        self._log.write(piece)
        self._log_room -= len(piece)
        if self._log_room == 0:
            self._log.write(b"\n[log truncated: cap reached]\n")

    @property
    def logged(self) -> bool:
        return self._log is not None

    def tail(self) -> str:
        data = b"".join(self._tail)[-self._tail_bytes :]
        return data.decode("utf-8", errors="replace")

    def finish(self, *, failed: bool, note: str | None = None) -> None:
        """Close the log. A failed attempt gets its file now if it has none yet (with `note`, a
        line of our own: why it could not start). Best effort: a disk that refuses the copy
        must not hide the attempt's own outcome, so that error leaves the attempt without a log."""
        if failed and self._head is not None:
            if note is not None:
                self._head.append(f"{note}\n".encode())
            try:
                self._spill()
            except OSError:
                log, self._log = self._log, None
                if log is not None:
                    with contextlib.suppress(OSError):
                        log.close()
        if self._log is not None:
            self._log.close()


@dataclass(frozen=True, slots=True)
class _Attempt:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    timeout_seconds: float
    kill_grace: float
    tail_bytes: int
    log_path: Path | None
    log_max_bytes: int
    cancel: Cancellation | None
    on_start: Callable[[int], None] | None


def _run_blocking(attempt: _Attempt) -> ProcessResult:
    """Start, watch and reap one process group; runs in a worker thread."""
    started = time.monotonic()
    output = _Output(attempt.tail_bytes, attempt.log_path, attempt.log_max_bytes)
    try:
        popen = subprocess.Popen(
            attempt.argv,
            cwd=attempt.cwd,
            env=attempt.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        reason = f"could not start {attempt.argv[0]!r}: {exc.strerror or exc}"
        output.finish(failed=True, note=reason)
        duration = time.monotonic() - started
        return ProcessResult(None, False, False, duration, "", 0, reason, log_written=output.logged)
    kill_at: list[float] = []

    def stop() -> None:  # called by a cancel, from whichever thread asked
        signal_group(popen.pid, signal.SIGTERM)
        kill_at.append(time.monotonic() + attempt.kill_grace)

    if attempt.cancel is not None:
        attempt.cancel.bind(stop)
    timed_out = False
    try:
        if attempt.on_start is not None:
            attempt.on_start(popen.pid)  # inside the try: whatever it does, the group is stopped
        timed_out = _watch(popen, output, started + attempt.timeout_seconds, attempt.kill_grace, kill_at)
    finally:
        signal_group(popen.pid, signal.SIGKILL)  # nothing of the group outlives the attempt
        popen.wait()
        assert popen.stdout is not None
        popen.stdout.close()
        cancelled = attempt.cancel is not None and attempt.cancel.requested and not timed_out
        error = _error(attempt, popen.returncode, timed_out=timed_out, cancelled=cancelled)
        output.finish(failed=error is not None)
    return ProcessResult(
        exit_code=popen.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_seconds=time.monotonic() - started,
        output_tail=output.tail(),
        output_bytes=output.total,
        error=error,
        log_written=output.logged,
    )


def _error(attempt: _Attempt, returncode: int, *, timed_out: bool, cancelled: bool) -> str | None:
    if timed_out:
        return f"timed out after {attempt.timeout_seconds:g} s; process group stopped"
    if cancelled:
        return "cancelled; process group stopped"
    return f"exited with code {returncode}" if returncode else None


def _watch(
    popen: subprocess.Popen[bytes], output: _Output, deadline: float, grace: float, kill_at: list[float]
) -> bool:
    """Read output until the leader has exited and the pipe is drained; enforce the deadline.

    Returns whether the deadline passed. When the leader exits, the rest of its group is killed
    so a lingering child cannot hold the pipe open.
    """
    assert popen.stdout is not None
    pipe = popen.stdout.fileno()
    pidfd = os.pidfd_open(popen.pid) if hasattr(os, "pidfd_open") else None
    poller = select.poll()
    poller.register(pipe, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    timed_out = exited = eof = False
    drain_until: float | None = None
    try:
        while not (exited and eof):
            now = time.monotonic()
            if not timed_out and now >= deadline:
                timed_out = True
                signal_group(popen.pid, signal.SIGTERM)
                kill_at.append(now + grace)
            if kill_at and now >= min(kill_at):
                signal_group(popen.pid, signal.SIGKILL)
                kill_at.clear()
            if drain_until is not None and now >= drain_until:
                break
            wake = [t for t in (deadline if not timed_out else None, *kill_at, drain_until) if t is not None]
            wait_ms = max(0, int((min(wake) - now) * 1000) + 1) if wake else None
            if pidfd is None and not exited and popen.poll() is not None:
                exited = True
                wait_ms = 0
            for fd, _ in poller.poll(wait_ms if pidfd is not None else min(wait_ms or 50, 50)):
                if fd == pipe:
                    chunk = os.read(pipe, _CHUNK)
                    if chunk:
                        output.feed(chunk)
                    else:
                        eof = True
                        poller.unregister(pipe)
                elif fd == pidfd and not exited:
                    exited = True
                    poller.unregister(pidfd)
                    signal_group(popen.pid, signal.SIGKILL)  # reap what the leader left behind
                    drain_until = time.monotonic() + _DRAIN_SECONDS
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return timed_out


def run_attempt(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_seconds: float,
    kill_grace: float,
    tail_bytes: int,
    log_path: Path | None,
    log_max_bytes: int,
    cancel: Cancellation | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run one attempt to the end, blocking (call it from a worker thread).

    `on_start` gets the new process group's id (its leader's pid) as soon as it exists, to
    write it down (`GroupGuard.started`); it should not raise.
    """
    attempt = _Attempt(
        list(argv),
        cwd,
        dict(env),
        timeout_seconds,
        kill_grace,
        tail_bytes,
        log_path,
        log_max_bytes,
        cancel,
        on_start,
    )
    return _run_blocking(attempt)
