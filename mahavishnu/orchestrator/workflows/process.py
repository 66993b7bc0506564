"""Running one attempt of a command: its own process group, a timeout, bounded output.

The command runs as an argv list (never a shell) in the repository folder,
in a new session so the whole process group can be stopped: SIGTERM first,
SIGKILL after a grace period. Output (stdout and stderr together) is kept
twice, both bounded: the tail in memory for the database, and the head in a
log file up to a byte cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["ProcessResult", "run_process"]

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


class _Output:
    """Collects a stream into a bounded tail and a bounded log file."""

    def __init__(self, tail_bytes: int, log_path: Path | None, log_max_bytes: int) -> None:
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._tail_bytes = tail_bytes
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
        if self._log_path is not None and self._log_room > 0:
            if self._log is None:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self._log_path.open("wb")
            piece = chunk[: self._log_room]
            self._log.write(piece)
            self._log_room -= len(piece)
            if self._log_room == 0:
                self._log.write(b"\n[log truncated: cap reached]\n")

    def tail(self) -> str:
        data = b"".join(self._tail)[-self._tail_bytes :]
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


async def _pump(stream: asyncio.StreamReader, output: _Output) -> None:
    while chunk := await stream.read(_CHUNK):
        output.feed(chunk)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the whole group, then SIGKILL it if the leader is still there after `grace`."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
    # Children may outlive the leader; the group gets SIGKILL either way.
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


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
    cancel: asyncio.Event | None = None,
) -> ProcessResult:
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        reason = f"could not start {argv[0]!r}: {exc.strerror or exc}"
        return ProcessResult(None, False, False, time.monotonic() - started, "", 0, reason)

    output = _Output(tail_bytes, log_path, log_max_bytes)
    assert process.stdout is not None
    pump = asyncio.create_task(_pump(process.stdout, output))
    waiters = {asyncio.create_task(process.wait())}
    cancel_task = asyncio.create_task(cancel.wait()) if cancel is not None else None
    if cancel_task is not None:
        waiters.add(cancel_task)
    timed_out = cancelled = False
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            timed_out = True
        elif cancel_task is not None and cancel_task in done:
            cancelled = True
        if timed_out or cancelled:
            await _stop_group(process, kill_grace)
        else:
            # The leader is done; reap anything it left behind in its group.
            _signal_group(process.pid, signal.SIGKILL)
    except asyncio.CancelledError:
        await asyncio.shield(_stop_group(process, kill_grace))
        raise
    finally:
        for task in waiters:
            task.cancel()
        try:
            await asyncio.wait_for(pump, _DRAIN_SECONDS)
        except TimeoutError:
            pump.cancel()
        output.close()
    error = None
    if timed_out:
        error = f"timed out after {timeout_seconds:g} s; process group stopped"
    elif cancelled:
        error = "cancelled; process group stopped"
    elif process.returncode:
        error = f"exited with code {process.returncode}"
    return ProcessResult(
        exit_code=process.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_seconds=time.monotonic() - started,
        output_tail=output.tail(),
        output_bytes=output.total,
        error=error,
    )
