"""Pushing the outbox to Akosha, in the background: the oldest entries, in order, as one JSON
batch to `{akosha_url}/ingest/memories` through the platform's service client, then settled
(taken off the queue) in one transaction. Akosha is idempotent on (source, memory, version), so
the batch a crash interrupts between the two is simply sent again.

A failed push is tried again, the same entries, after a backoff (`platform/push_loop.py`:
exponential with jitter, capped, or what Akosha's Retry-After or the client's open circuit
asks). Nothing is skipped or dropped, not even a batch Akosha refuses (a 4xx): that one is
logged as an error at every try, and the backlog metrics (`session_buddy_outbox_lag`,
`..._oldest_age_seconds`) climb until the cause is fixed, so a stuck queue is loud, never silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from mahavishnu.platform import (
    ConfigurationError,
    Database,
    InvalidArgumentError,
    UnavailableError,
    get_logger,
)
from mahavishnu.platform.push_loop import Backoff, PushLoop
from mahavishnu.platform.service_client import RequestTimeouts, ServiceClient
from mahavishnu.session_buddy import outbox
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.vault import Vault

__all__ = ["INGEST_PATH", "MAX_BATCH_BYTES", "Pusher", "push_to_akosha"]

log = get_logger("session_buddy.pusher")

INGEST_PATH = "/ingest/memories"
MAX_BATCH_BYTES = 512 * 1024
"""The records of one request, as JSON: half the platform's default body limit (1 MiB), so a
batch of large memories is not refused by an Akosha on its defaults."""
INGEST_TIMEOUTS = RequestTimeouts(read_seconds=60.0)
"""Akosha may index a whole batch before it answers; a timeout would send it again."""


class Pusher:
    """One process's pusher. Several (one per process) may run on one database: each sends
    the oldest entries, so Akosha may get a batch twice, which it ignores."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        client: ServiceClient,
        metrics: MemoryMetrics,
        *,
        source: str,
        batch_size: int = 200,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        poll_seconds: float = 1.0,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._vault = vault
        self._client = client
        self._metrics = metrics
        self._source = source
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        self._poll = poll_seconds
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._sending: outbox.Batch | None = None
        """The batch being sent: what a refusal is logged with."""

    async def push_once(self) -> int:
        """Send the next batch and settle it; answers how many entries it settled (0: none
        waits). Raises what the read or the send raised, and then nothing is settled."""
        batch = await outbox.next_batch(
            self._db,
            self._vault,
            source=self._source,
            limit=self._batch_size,
            max_bytes=self._max_batch_bytes,
        )
        if not batch.entries:
            return 0
        if batch.records:
            self._sending = batch
            answer = await self._client.post(
                INGEST_PATH, json={"source": self._source, "records": batch.records}
            )
            if not answer.is_success:  # a redirect (the client follows none) is no acceptance
                raise InvalidArgumentError(
                    f"akosha answered POST {INGEST_PATH} with HTTP {answer.status_code}"
                )
            self._sending = None
        settled = await outbox.settle(self._db, batch.entries)
        self._metrics.outbox_pushed.inc(settled)
        return len(batch.entries)

    async def measure(self) -> outbox.Backlog:
        """Set the backlog metrics from the outbox; answers what it found."""
        waiting = await outbox.backlog(self._db)
        self._metrics.outbox_lag.set(waiting.count)
        age = 0.0
        if waiting.oldest_at is not None:
            age = max(0.0, (datetime.now(UTC) - waiting.oldest_at).total_seconds())
        self._metrics.outbox_oldest_seconds.set(age)
        return waiting

    async def run(self) -> None:
        """Push until cancelled (`PushLoop`): at once while entries wait, every `poll_seconds`
        when none does, and after a backoff when a push failed."""
        await PushLoop(
            "akosha",
            self.push_once,
            self.measure,
            self._metrics.outbox_failures,
            log,
            complain=self._complain,
            poll_seconds=self._poll,
            backoff=self._backoff,
            sleep=self._sleep,
        ).run()

    def _complain(self, exc: Exception, failures: int, wait: float) -> None:
        """An outage is a warning; anything else (Akosha refused the batch, a record would not
        open) is an error: it fails the same way at every try until someone fixes it."""
        fields: dict[str, object] = {
            "error": f"{type(exc).__name__}: {exc}",
            "failures": failures,
            "retry_in_seconds": round(wait, 3),
        }
        batch, self._sending = self._sending, None
        if isinstance(exc, UnavailableError):
            log.warning("akosha_push_failed", **fields)
            return
        if batch is not None:
            fields.update(first_entry=batch.entries[0], records=len(batch.records))
        advice = (
            "Akosha refused this service's token: check AKOSHA_API_TOKEN"
            if isinstance(exc, ConfigurationError)
            else "the same entries are tried again until they go through; nothing after them "
            "moves meanwhile: fix the cause the error names"
        )
        log.error("akosha_push_stuck", advice=advice, **fields)


async def push_to_akosha(
    db: Database, vault: Vault, settings: SessionBuddySettings, metrics: MemoryMetrics
) -> None:
    """Push as the settings say until cancelled; nothing (the outbox keeps recording) when
    `akosha_url` is unset."""
    if settings.akosha_url is None:
        log.info("akosha_push_disabled", reason="SESSION_BUDDY_AKOSHA_URL is not set")
        return
    async with ServiceClient(
        "akosha", settings.akosha_url, token=settings.akosha_token, timeouts=INGEST_TIMEOUTS
    ) as client:
        pusher = Pusher(
            db, vault, client, metrics, source=settings.source_name, batch_size=settings.outbox_batch_size
        )
        await pusher.run()
