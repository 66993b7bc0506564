"""`mahavishnu up`: every service of the ecosystem at once, each in its own process.

Each service runs as `mahavishnu serve NAME` (its own settings, port, database and logs), so a
service started here behaves exactly as one started alone. The supervisor's job is small and
strict: start them all; if one exits, stop the others and exit with its code (a half-started
ecosystem is worse than none); on SIGINT or SIGTERM, pass SIGTERM to each, give them the grace
period to drain, then kill what is left, and exit 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["Child", "supervise"]

POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    url: str
    """Where it listens, for the start-up line."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables it gets on top of this process's: how it finds the others (`cli._wired_env`)."""


def _spawn(child: Child) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mahavishnu", "serve", child.name], env={**os.environ, **child.env}
    )


def supervise(
    children: Sequence[Child],
    *,
    grace_seconds: float,
    say: Callable[[str], None],
    spawn: Callable[[Child], subprocess.Popen[bytes]] = _spawn,
) -> int:
    """Run `children` until one exits or a stop signal arrives; the exit code to end with."""
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for child in children:
            running[child.name] = spawn(child)
        say("started " + ", ".join(f"{c.name} on {c.url}" for c in children) + " (Ctrl-C stops them all)")
        code = _watch(running, stopping, say)
    finally:
        _stop_all(running, grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _watch(
    running: Mapping[str, subprocess.Popen[bytes]], stopping: list[int], say: Callable[[str], None]
) -> int:
    while not stopping:
        for name, process in running.items():
            code = process.poll()
            if code is not None:
                say(f"{name} exited with code {code}; stopping the others")
                return code or 1
        time.sleep(POLL_SECONDS)
    return 0


def _stop_all(running: Mapping[str, subprocess.Popen[bytes]], grace_seconds: float) -> None:
    """SIGTERM to each (they drain), then SIGKILL to any still there after the grace period."""
    for process in running.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in running.values():
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
