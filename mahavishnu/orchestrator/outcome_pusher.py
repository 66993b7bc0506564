"""Sending closed workflows' outcomes to Akosha, in the background: the oldest entries of the
outbox (`workflows/outcome_outbox.py`), as one JSON batch to `{akosha_url}/ingest/outcomes`
through the platform's service client, then settled (taken off the queue) once Akosha answered
200. A workflow never waits for any of it: its close only wrote an outbox row.

A failed send is tried again, the same entries, after a backoff (`platform/push_loop.py`:
capped exponential backoff, or what Akosha's Retry-After or the client's open circuit asks). Nothing is
skipped or dropped, not even a batch Akosha refuses (a 4xx): that is logged as an error at every
try, and `mahavishnu_akosha_outbox_lag` climbs until the cause is fixed, so a stuck queue is
loud, never silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows import outcome_outbox
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError
from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.push_loop import PushLoop
from mahavishnu.platform.service_client import RequestTimeouts, ServiceClient

__all__ = ["OUTCOMES_PATH", "OutcomePusher", "PushMetrics", "push_outcomes"]

log = get_logger("mahavishnu.outcome_pusher")

OUTCOMES_PATH = "/ingest/outcomes"
TIMEOUTS = RequestTimeouts(read_seconds=60.0)
"""Akosha answers after its commit; a timeout would only send the batch again."""
MAX_ENTRIES = 100
"""Closed workflows per batch, whatever their size."""


class PushMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.lag = Gauge(
            "mahavishnu_akosha_outbox_lag",
            "Closed workflows whose outcomes Akosha has not yet taken.",
            registry=r,
        )
        self.pushed = Counter(
            "mahavishnu_akosha_outcomes_pushed", "Outcomes (repository runs) Akosha accepted.", registry=r
        )
        self.failures = Counter("mahavishnu_akosha_push_failures", "Sends to Akosha that failed.", registry=r)


class OutcomePusher:
    """One process's pusher. Several (one per replica) may run on one database: each sends the
    oldest entries, so Akosha may get a batch twice, which changes nothing there."""

    def __init__(
        self,
        db: Database,
        client: ServiceClient,
        metrics: PushMetrics,
        *,
        source: str,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._client = client
        self._metrics = metrics
        self._source = source
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._sleep = sleep

    async def push_once(self) -> int:
        """Send the next batch and settle it; answers how many entries it settled (0: none
        waits). Raises what the read or the send raised, and then nothing is settled."""
        batch = await outcome_outbox.next_batch(
            self._db, max_entries=MAX_ENTRIES, max_outcomes=self._batch_size
        )
        if not batch.entries:
            return 0
        if batch.outcomes:  # a workflow without runs has nothing to tell
            answer = await self._client.post(
                OUTCOMES_PATH, json={"source": self._source, "outcomes": batch.outcomes}
            )
            if not answer.is_success:  # a redirect (the client follows none) is no acceptance
                raise InvalidArgumentError(
                    f"akosha answered POST {OUTCOMES_PATH} with HTTP {answer.status_code}"
                )
            self._metrics.pushed.inc(len(batch.outcomes))
        await outcome_outbox.settle(self._db, batch.entries)
        return len(batch.entries)

    async def run(self) -> None:
        """Push until cancelled (`PushLoop`): at once while entries wait, every `poll_seconds`
        when none does, and after a backoff when a send failed."""
        await PushLoop(
            "akosha_outcomes",
            self.push_once,
            self._measure,
            self._metrics.failures,
            log,
            poll_seconds=self._poll,
            sleep=self._sleep,
        ).run()

    async def _measure(self) -> None:
        self._metrics.lag.set((await outcome_outbox.backlog(self._db)).count)


async def push_outcomes(db: Database, settings: MahavishnuSettings, metrics: PushMetrics) -> None:
    """Push as the settings say until cancelled; nothing when `akosha_url` is unset."""
    if settings.akosha_url is None:
        log.info("akosha_push_disabled", reason="MAHAVISHNU_AKOSHA_URL is not set")
        return
    async with ServiceClient(
        "akosha", settings.akosha_url, token=settings.akosha_token, timeouts=TIMEOUTS
    ) as client:
        pusher = OutcomePusher(
            db, client, metrics, source=settings.source_name, batch_size=settings.outcome_batch_size
        )
        await pusher.run()
