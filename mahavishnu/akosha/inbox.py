"""Taking in one batch, whichever way it came (the HTTP route or the `ingest_memories` tool):
checked whole, stored in one transaction, counted and logged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mahavishnu.akosha.ingest import ingest
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.vector_store import VectorStore
from mahavishnu.akosha.views import IngestResult
from mahavishnu.akosha.wire import Tombstone, Upsert, check_batch
from mahavishnu.platform import Database, get_logger
from mahavishnu.platform.crypto import KeyRing

__all__ = ["Inbox"]

log = get_logger("akosha.inbox")


class Inbox:
    def __init__(
        self,
        db: Database,
        ring: KeyRing,
        metrics: IngestMetrics,
        *,
        max_records: int,
        on_stored: Callable[[Sequence[Upsert | Tombstone]], None] | None = None,
        vectors: Callable[[], VectorStore | None] = lambda: None,
    ) -> None:
        self._db = db
        self._on_stored = on_stored
        """Told of the records that moved the store forward, once committed (the search index
        takes them in at once)."""
        self._vectors = vectors
        """Where the vectors senders made are kept (None: nowhere yet, the model is loading)."""
        self._ring = ring
        self._metrics = metrics
        self._max_records = max_records

    async def take(self, source: str, records: Sequence[Upsert | Tombstone]) -> IngestResult:
        """Store `source`'s batch; answers once it is committed. InvalidArgumentError names
        what is wrong with a batch, before anything is stored."""
        check_batch(source, records, self._max_records)
        with self._metrics.duration.time():
            counts = await ingest(self._db, self._ring, records, self._vectors())
        if self._on_stored is not None:
            self._on_stored([r for r in records if r.memory_id in counts.moved])
        written = [r.updated_at for r in records if isinstance(r, Upsert)]
        self._metrics.arrived(source, max(written) if written else None)
        self._metrics.records.labels("memory", "accepted").inc(counts.accepted)
        self._metrics.records.labels("memory", "unchanged").inc(counts.unchanged)
        log.info("ingested", source=source, accepted=counts.accepted, unchanged=counts.unchanged)
        return IngestResult(accepted=counts.accepted, unchanged=counts.unchanged)
