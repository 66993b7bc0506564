"""Search by meaning's moving parts: the embedder, the in-process index, and the background
workers that keep the index filled, off the request path.

Storing never embeds (a model run costs milliseconds of CPU a write must not wait for): it sets
`wake`, and `workers` embedding tasks pick up every live memory (any tenant) whose current
version has no vector of the current model, embed a batch in a thread, write the sealed
vectors and add them to the index. Writes by other processes are found by polling, and so are
vectors other processes' workers wrote (followed by `embedded_at`). At start, the index is
rebuilt from the sealed vectors before the workers begin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from mahavishnu.platform import Database, UnavailableError, get_logger
from mahavishnu.platform.background import woken_or_after
from mahavishnu.platform.search.embeddings import Embedder
from mahavishnu.platform.search.vector_index import TenantVectors, Vector, VectorIndex
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.vault import MEMORY_RECORD, Vault
from mahavishnu.session_buddy.vectors import Pending, load_vectors, pending, pending_count, write_vectors

__all__ = ["Meaning"]

log = get_logger("session_buddy.meaning")

_FOLLOW_SLACK = timedelta(seconds=5)
"""How far back each poll looks for other processes' vectors (clocks and commit order)."""
_REBUILD_CHUNK = 10_000
"""Vectors read before they go into the index at start: bulk adds, in bounded memory."""

Row = tuple[str, str, int, Vector]
"""(tenant, memory_id, version, vector)"""


class Meaning:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        workers: int = 1,
        batch: int = 64,
        poll_seconds: float = 1.0,
        metrics: MemoryMetrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self.embedder = embedder
        self.index = VectorIndex(embedder.model_id, embedder.dimensions)
        self._workers = workers
        self._batch = batch
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._claimed: set[str] = set()
        self._claiming = asyncio.Lock()
        self.ready = False
        """True once the index was rebuilt: semantic search answers from then on."""

    def wake(self) -> None:
        """A memory was stored or updated in this process: embed it soon."""
        self._wake.set()

    def vectors_of(self, tenant: str) -> TenantVectors:
        return self.index.tenant(tenant)

    def forget(self, tenant: str, memory_id: str) -> None:
        self.index.tenant(tenant).remove(memory_id)

    async def query_vector(self, query: str) -> NDArray[np.float32]:
        if not self.ready:
            raise UnavailableError("search by meaning is still loading its index; try again shortly")
        with self._timed("query"):
            vectors = await asyncio.to_thread(self.embedder.embed, [query])
        first: NDArray[np.float32] = vectors[0]
        return first

    async def rebuild(self, vault: Vault) -> int:
        """Fill the index from the sealed vectors of the current model; answers how many."""
        count = 0
        rows: list[Row] = []
        async for row in load_vectors(self._db, vault, self.index.model_id):
            rows.append(row)
            if len(rows) == _REBUILD_CHUNK:
                count += await self._add(rows)
                rows = []
        count += await self._add(rows)
        self.ready = True
        return count

    async def _add(self, rows: Sequence[Row]) -> int:
        """Index (tenant, memory_id, version, vector) rows with bulk adds per tenant (a graph
        takes many nodes at once for far less than as many single adds), off the event loop."""
        by_tenant: dict[str, list[tuple[str, int, Vector]]] = defaultdict(list)
        for tenant, memory_id, version, vector in rows:
            by_tenant[tenant].append((memory_id, version, vector))
        for tenant, tenant_rows in by_tenant.items():
            await self.index.tenant(tenant).add_many_off_loop(tenant_rows)
        return len(rows)

    async def embed_pending(self, vault: Vault) -> int:
        """Embed one batch of memories that need it; answers how many were written."""
        async with self._claiming:
            batch = await pending(self._db, self.index.model_id, limit=self._batch, skip=self._claimed)
            self._claimed.update(p.memory_id for p in batch)
        try:
            if not batch:
                return 0
            texts = [_content(vault, p) for p in batch]
            with self._timed("batch"):
                vectors = await asyncio.to_thread(self.embedder.embed, texts)
            written = await write_vectors(
                self._db, vault, self.index.model_id, list(zip(batch, vectors, strict=True))
            )
            await self._add([(item.tenant, item.memory_id, item.version, vector) for item, vector in written])
            if self._metrics is not None:
                self._metrics.embedded.inc(len(written))
            return len(written) or len(batch)  # none written: another process did them; go on
        finally:
            self._claimed.difference_update(p.memory_id for p in batch)

    async def follow(self, vault: Vault, since: datetime) -> None:
        """Add vectors other processes wrote since `since` (minus a slack) to the index."""
        rows = [
            row
            async for row in load_vectors(self._db, vault, self.index.model_id, since=since - _FOLLOW_SLACK)
            if self.index.tenant(row[0]).version_of(row[1]) != row[2]
        ]
        await self._add(rows)

    async def run(self, vault: Vault) -> None:
        """Rebuild, then embed and follow until cancelled."""
        started = datetime.now(UTC)
        count = await self.rebuild(vault)
        log.info("vector_index_rebuilt", vectors=count, model=self.index.model_id)
        async with asyncio.TaskGroup() as group:
            for number in range(self._workers):
                group.create_task(self._embedding(vault), name=f"session-buddy-embedding-{number}")
            group.create_task(self._following(vault, started), name="session-buddy-vector-follow")

    def _timed(self, what: str) -> contextlib.AbstractContextManager[object]:
        if self._metrics is None:
            return contextlib.nullcontext()
        return self._metrics.embedding_duration.labels(what).time()

    async def _embedding(self, vault: Vault) -> None:
        while True:
            self._wake.clear()
            try:
                done = await self.embed_pending(vault)
                if self._metrics is not None:
                    waiting = await pending_count(self._db, self.index.model_id) if done else 0
                    self._metrics.embedding_queue.set(waiting)
            except Exception as exc:  # an outage must not end the worker
                log.warning("embedding_failed", error=f"{type(exc).__name__}: {exc}")
                done = 0
            if not done:
                await woken_or_after(self._wake, self._poll)

    async def _following(self, vault: Vault, since: datetime) -> None:
        while True:
            await asyncio.sleep(self._poll)
            now = datetime.now(UTC)
            try:
                await self.follow(vault, since)
            except Exception as exc:
                log.warning("vector_follow_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            since = now


def _content(vault: Vault, item: Pending) -> str:
    document = vault.open(MEMORY_RECORD, item.tenant, item.memory_id, item.version, item.sealed)
    return str(document["content"])
