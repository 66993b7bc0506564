"""Running one attempt of a command: its own process group, a timeout, bounded output.

The command runs as an argv list (never a shell) in the repository folder,
in a new session so the whole process group can be stopped: SIGTERM first,
SIGKILL after a grace period. Output (stdout and stderr together) is kept
twice, both bounded: the tail in memory for the database and, when there is
more than the tail holds, the head in a log file up to a byte cap.

This is the engine's hot path: the fork happens in a worker thread, then the
output pipe and the exit (a pidfd) are watched by the event loop directly,
with no task per run and no polling; a cancel reaches the process group
through a hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["Cancellation", "ProcessResult", "run_process"]

_CHUNK = 65536
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None
    """None when the program could not be started."""
    timed_out: bool
    cancelled: bool
    duration_seconds: float
    output_tail: str
    output_bytes: int
    error: str | None = None
    log_written: bool = False
    """True when the output outgrew the tail and went to the log file too."""


class Cancellation:
    """A request to stop one run, which may come before or while it runs."""

    def __init__(self) -> None:
        self.requested = False
        self._hook: Callable[[], None] | None = None

    def request(self) -> None:
        if not self.requested:
            self.requested = True
            if self._hook is not None:
                self._hook()

    def bind(self, hook: Callable[[], None]) -> None:
        self._hook = hook
        if self.requested:
            hook()


class _Output:
    """Collects a stream into a bounded tail and, past the tail's size, a bounded log file."""

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
        if self._head is not None:
            self._head.append(chunk)
            if self.total <= self._tail_bytes:
                return  # still all in the tail: no file needed
            pending, self._head = self._head, None
            self._open_log()
            for piece in pending:
                self._write(piece)
        else:
            self._write(chunk)

    def _open_log(self) -> None:
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("wb")

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

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


_SPAWNERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="spawn")
"""fork+exec blocks its caller until the child has exec'd; doing it in threads lets several
starts overlap and keeps the event loop free. (asyncio's own subprocess support forks on
the loop's thread, which caps an engine at one start at a time.)"""


def _spawn(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class _Child:
    """A started process watched from the event loop: its output pipe and its exit (pidfd)."""

    def __init__(self, popen: subprocess.Popen[bytes], output: _Output) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._output = output
        assert popen.stdout is not None
        self._fd = popen.stdout.fileno()
        os.set_blocking(self._fd, False)
        self.drained: asyncio.Future[None] = self._loop.create_future()
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(self._fd, self._readable)
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):  # Linux: the kernel tells the loop when the child exits
            self._pidfd = os.pidfd_open(self.pid)
            self._loop.add_reader(self._pidfd, self._gone)
        else:  # elsewhere a thread waits for it
            waiting = self._loop.run_in_executor(None, popen.wait)
            waiting.add_done_callback(lambda _: self._gone())

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output.feed(data)
            return
        self._loop.remove_reader(self._fd)
        if not self.drained.done():
            self.drained.set_result(None)

    def _gone(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
        if not self.exited.done():
            self.exited.set_result(None)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def close(self) -> None:
        """Stop watching, reap the child, release its descriptors."""
        self._loop.remove_reader(self._fd)
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
        self.popen.wait()
        assert self.popen.stdout is not None
        self.popen.stdout.close()


async def _stop_group(child: _Child, grace: float) -> None:
    """SIGTERM the whole group, then SIGKILL it if the leader is still there after `grace`."""
    _signal_group(child.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(child.exited), grace)
    _signal_group(child.pid, signal.SIGKILL)
    await asyncio.shield(child.exited)


async def run_process(
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
) -> ProcessResult:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        popen = await loop.run_in_executor(_SPAWNERS, _spawn, list(argv), cwd, dict(env))
    except OSError as exc:
        reason = f"could not start {argv[0]!r}: {exc.strerror or exc}"
        return ProcessResult(None, False, False, time.monotonic() - started, "", 0, reason)

    output = _Output(tail_bytes, log_path, log_max_bytes)
    child = _Child(popen, output)
    if cancel is not None:

        def stop() -> None:
            _signal_group(child.pid, signal.SIGTERM)
            loop.call_later(kill_grace, _signal_group, child.pid, signal.SIGKILL)

        cancel.bind(stop)
    timed_out = False
    try:
        async with asyncio.timeout(timeout_seconds):
            await asyncio.shield(child.exited)  # the timeout cancels this wait, never the future
    except TimeoutError:
        timed_out = True
        await _stop_group(child, kill_grace)
    except asyncio.CancelledError:
        await asyncio.shield(_stop_group(child, kill_grace))
        raise
    finally:
        # The leader is gone; reap anything it left behind in its group, then drain the pipe.
        _signal_group(child.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.drained), _DRAIN_SECONDS)
        child.close()
        output.close()
    cancelled = cancel is not None and cancel.requested and not timed_out
    error = None
    if timed_out:
        error = f"timed out after {timeout_seconds:g} s; process group stopped"
    elif cancelled:
        error = "cancelled; process group stopped"
    elif child.returncode:
        error = f"exited with code {child.returncode}"
    return ProcessResult(
        exit_code=child.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_seconds=time.monotonic() - started,
        output_tail=output.tail(),
        output_bytes=output.total,
        error=error,
        log_written=output.logged,
    )
