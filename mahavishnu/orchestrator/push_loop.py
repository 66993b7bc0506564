"""The loop of Mahavishnu's background pushers (workflow outcomes to Akosha, agent sessions to
Session-Buddy): push the outbox's oldest entries, at once while more wait, every `poll_seconds`
when none does, and after a backoff when a push failed.

The backoff is the workflows' own exponential backoff with jitter (`decisions.backoff_seconds`),
capped at five minutes, or what the peer's Retry-After (or the service client's open circuit)
asks. Nothing is skipped: a push the peer refuses is an error at every try and the outbox's lag
gauge climbs until the cause is fixed, so a stuck queue is loud, never silent. An outage of the
peer (`UnavailableError`) is a warning: it passes by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from mahavishnu.orchestrator.workflows.decisions import backoff_seconds
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.platform.errors import UnavailableError
from mahavishnu.platform.service_client import ServiceUnavailableError

__all__ = ["BACKOFF", "PushLoop", "retry_delay"]

BACKOFF = RetryPolicy(initial_backoff_seconds=1.0, max_backoff_seconds=300.0, jitter_seconds=1.0)
"""Between failed pushes: 1 s doubling to 5 minutes, with up to a second of jitter."""


@dataclass(frozen=True, slots=True)
class PushLoop:
    """One pusher's loop; its log events are `{name}_push_failed` and `{name}_push_resumed`."""

    name: str
    push_once: Callable[[], Awaitable[int]]
    """Push the next entries; answers how many it settled (0: none waits)."""
    backlog: Callable[[], Awaitable[int]]
    """How many entries wait, for `lag` after every push."""
    lag: Gauge
    failures: Counter
    log: Any
    poll_seconds: float = 1.0
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
                wait = retry_delay(exc, failures)
                (self.log.warning if isinstance(exc, UnavailableError) else self.log.error)(
                    f"{self.name}_push_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    failures=failures,
                    retry_in_seconds=round(wait, 3),
                )
            else:
                if failures:
                    self.log.info(f"{self.name}_push_resumed", after_failures=failures)
                failures = 0
                wait = 0.0 if pushed else self.poll_seconds
            try:
                self.lag.set(await self.backlog())
            except Exception as exc:  # the database is down: the push said so already
                self.log.debug(f"{self.name}_backlog_failed", error=f"{type(exc).__name__}: {exc}")
            await self.sleep(wait)


def retry_delay(exc: Exception, failures: int) -> float:
    """What the peer (or the open circuit) asked for, else the backoff; never over its cap."""
    retry_after = exc.retry_after_seconds if isinstance(exc, ServiceUnavailableError) else None
    if retry_after is not None:
        return min(BACKOFF.max_backoff_seconds, max(0.0, retry_after))
    return backoff_seconds(BACKOFF, failures)
