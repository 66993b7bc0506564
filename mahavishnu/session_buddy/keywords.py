"""Keeping the in-process keyword index (`postings.py`) in step with the store.

At start the index is rebuilt from the blind-index rows, in batches of memories, while searches
go on through SQL (`keyword.py`) until it is ready. From then on:

- this process's writes put what they wrote into it as they commit (`Memories`);
- writes by other processes are followed by polling the memories whose `changed_at` moved (with
  a slack for clocks and commit order, as the vector index follows `embedded_at`);
- a search re-checks in SQL the page the index answered, and refreshes any memory whose row
  says otherwise (deleted, purged, expired, a newer version) before ranking again.

A version only ever replaces an older one, so a slow poll can never take a memory back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, get_logger
from mahavishnu.platform.search.postings import IndexedMemory, Postings, TenantPostings
from mahavishnu.session_buddy.models import Memory, MemoryTerm

__all__ = ["Keywords"]

log = get_logger("session_buddy.keywords")

_FOLLOW_SLACK = timedelta(seconds=5)
_LOAD_BATCH = 2000
"""Memories read per rebuild step (their ids, then their postings by id range)."""

_MemoryRow = Row[str, str, int, int, datetime | None, datetime | None]
_ROW = (Memory.id, Memory.tenant, Memory.version, Memory.term_count, Memory.expires_at, Memory.deleted_at)


class Keywords:
    def __init__(self, db: Database, *, poll_seconds: float = 1.0) -> None:
        self._db = db
        self._poll = poll_seconds
        self.postings = Postings()
        self.ready = False
        """True once rebuilt: keyword rankings come from the index from then on."""

    def of(self, tenant: str) -> TenantPostings | None:
        """The tenant's postings once the index is ready; None while SQL must rank."""
        return self.postings.tenant(tenant) if self.ready else None

    def put(self, tenant: str, memory: IndexedMemory) -> None:
        """A version this process just committed."""
        postings = self.postings.tenant(tenant)
        held = postings.version_of(memory.memory_id)
        if held is None or memory.version > held:
            postings.put(memory)

    def forget(self, tenant: str, memory_id: str) -> None:
        self.postings.tenant(tenant).remove(memory_id)

    async def refresh(self, session: AsyncSession, memory_ids: Collection[str], tenant: str) -> None:
        """Index what the store holds now of `memory_ids` (the tenant's): a live memory's current
        version, nothing of one deleted or purged."""
        rows = list(
            await session.execute(
                select(*_ROW).where(Memory.tenant == tenant, Memory.id.in_(list(memory_ids)))
            )
        )
        for gone in set(memory_ids) - {row.id for row in rows}:
            self.forget(tenant, gone)
        await self._apply(session, rows)

    async def rebuild(self) -> int:
        """Fill the index from every live memory's blind-index rows; answers how many."""
        count = 0
        after = ""
        while True:
            async with self._db.session() as session:
                rows = list(
                    await session.execute(
                        select(*_ROW)
                        .where(Memory.deleted_at.is_(None), Memory.id > after)
                        .order_by(Memory.id)
                        .limit(_LOAD_BATCH)
                    )
                )
                if rows:
                    await self._apply(session, rows, last=rows[-1].id)
            count += len(rows)
            if len(rows) < _LOAD_BATCH:
                self.ready = True
                return count
            after = rows[-1].id

    async def follow(self, since: datetime) -> None:
        """Take in what other processes changed since `since` (minus a slack)."""
        async with self._db.session() as session:
            rows = list(
                await session.execute(select(*_ROW).where(Memory.changed_at >= since - _FOLLOW_SLACK))
            )
            await self._apply(session, rows)

    async def run(self) -> None:
        """Rebuild, then follow until cancelled."""
        started = datetime.now(UTC)
        count = await self.rebuild()
        log.info("keyword_index_rebuilt", memories=count, tenants=len(list(self.postings.tenants())))
        since = started
        while True:
            await asyncio.sleep(self._poll)
            now = datetime.now(UTC)
            try:
                await self.follow(since)
            except Exception as exc:  # an outage must not end the loop: searches re-check anyway
                log.warning("keyword_follow_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            since = now

    async def _apply(
        self, session: AsyncSession, rows: Iterable[_MemoryRow], *, last: str | None = None
    ) -> None:
        """Index the live rows whose version is newer than the index's, drop the deleted ones.
        `last` (rows in id order, from a rebuild): read the postings by id range, which the
        primary key answers, instead of by a list of ids."""
        wanted: dict[str, _MemoryRow] = {}
        for row in rows:
            held = self.postings.tenant(row.tenant).version_of(row.id)
            if row.deleted_at is not None:
                self.forget(row.tenant, row.id)
            elif held is None or row.version > held:
                wanted[row.id] = row
        if not wanted:
            return
        postings = select(MemoryTerm.memory_id, MemoryTerm.token, MemoryTerm.occurrences)
        if last is not None:
            postings = postings.where(MemoryTerm.memory_id >= min(wanted), MemoryTerm.memory_id <= last)
        else:
            postings = postings.where(MemoryTerm.memory_id.in_(list(wanted)))
        words: dict[str, dict[bytes, int]] = {memory_id: {} for memory_id in wanted}
        for memory_id, token, occurrences in await session.execute(postings):
            if memory_id in words:
                words[memory_id][token] = occurrences
        for memory_id, row in wanted.items():
            self.put(
                row.tenant,
                IndexedMemory(
                    memory_id=memory_id,
                    version=row.version,
                    length=row.term_count,
                    expires_at=None if row.expires_at is None else row.expires_at.timestamp(),
                    words=words[memory_id],
                ),
            )
