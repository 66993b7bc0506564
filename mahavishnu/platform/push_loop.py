"""The loop every background pusher of the ecosystem runs (Session-Buddy's memories to Akosha,
Mahavishnu's workflow outcomes to Akosha and its agent sessions to Session-Buddy): push the
outbox's oldest entries, at once while more wait, every `poll_seconds` when none does, and
after a backoff when a push failed.

The backoff is exponential with jitter, capped, or what the peer's Retry-After (or the service
client's open circuit) asks. Nothing is skipped: a push the peer refuses fails at every try and
the outbox's backlog metrics climb until the cause is fixed, so a stuck queue is loud, never
silent. An outage of the peer (`UnavailableError`) is a warning: it passes by itself.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from mahavishnu.platform.errors import UnavailableError
from mahavishnu.platform.service_client import ServiceUnavailableError

__all__ = ["Backoff", "PushLoop"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait after the `failures`-th failed push in a row."""

    initial_seconds: float = 1.0
    max_seconds: float = 300.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Retry-After when the peer (or the open circuit) gave one, else exponential with
        jitter (between half and all of the doubled wait); never more than `max_seconds`."""
        if retry_after is not None:
            return min(self.max_seconds, max(0.0, retry_after))
        ceiling = min(self.max_seconds, self.initial_seconds * 2.0 ** min(failures - 1, 32))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class PushLoop:
    """One pusher's loop; its log events are `{name}_push_failed` (unless `complain` logs the
    failure its own way) and `{name}_push_resumed`."""

    name: str
    push_once: Callable[[], Awaitable[int]]
    """Push the next entries; answers how many it settled (0: none waits)."""
    measure: Callable[[], Awaitable[object]]
    """Set the backlog metrics from the outbox, after every push."""
    failures: Counter
    log: Any
    complain: Callable[[Exception, int, float], None] | None = None
    """Log a failed push (the error, failures in a row, seconds until the next try)."""
    poll_seconds: float = 1.0
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def run(self) -> None:
        """Push until cancelled."""
        failures = 0
        while True:
            try:
                pushed = await self.push_once()
            except Exception as exc:  # an outage must not end the loop
                failures += 1
                self.failures.inc()
                retry_after = exc.retry_after_seconds if isinstance(exc, ServiceUnavailableError) else None
                wait = self.backoff.delay(failures, retry_after)
                (self.complain or self._complain)(exc, failures, wait)
            else:
                if failures:
                    self.log.info(f"{self.name}_push_resumed", after_failures=failures)
                failures = 0
                wait = 0.0 if pushed else self.poll_seconds
            try:
                await self.measure()
            except Exception as exc:  # the database is down: the push said so already
                self.log.debug(f"{self.name}_backlog_failed", error=f"{type(exc).__name__}: {exc}")
            await self.sleep(wait)

    def _complain(self, exc: Exception, failures: int, wait: float) -> None:
        (self.log.warning if isinstance(exc, UnavailableError) else self.log.error)(
            f"{self.name}_push_failed",
            error=f"{type(exc).__name__}: {exc}",
            failures=failures,
            retry_in_seconds=round(wait, 3),
        )
