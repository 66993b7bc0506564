"""One tenant's memories: the only way to memory rows, and every query here is narrowed to the
tenant it was made for. Tools build one per call from the caller's token (`Principal.tenant`),
so no argument of any tool can name another tenant's data.

Writes are single transactions. Storing is idempotent twice over: a retry with the same
`idempotency_key` answers the first result, and the same content stored again answers the
memory that holds it (nothing is replaced, nothing deleted). Both rest on unique constraints,
so concurrent writers in any number of processes cannot double a memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import InvalidArgumentError, NotFoundError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.platform.search.postings import IndexedMemory
from mahavishnu.session_buddy import outbox
from mahavishnu.session_buddy.memory_records import (
    Filters,
    Limits,
    NewMemory,
    checked_document,
    drop_index,
    write_version,
)
from mahavishnu.session_buddy.memory_search import MemorySearch, SearchMode
from mahavishnu.session_buddy.models import Memory, MemoryVector, MemoryVersion
from mahavishnu.session_buddy.vault import MEMORY_RECORD
from mahavishnu.session_buddy.views import (
    MemoryHistory,
    MemoryPage,
    MemoryStats,
    MemoryVersionView,
    MemoryView,
    StoreResult,
)

__all__ = ["Filters", "Limits", "Memories", "NewMemory", "SearchMode"]


class Memories(MemorySearch):
    async def store(self, new: NewMemory, *, idempotency_key: str | None = None) -> StoreResult:
        document = self._document(new)
        content_mac = self._vault.mac(self.tenant, "content", document["content"])
        key_mac = self._idempotency_mac(idempotency_key)
        for _ in range(3):  # a concurrent writer of the same key or content wins the constraint
            try:
                # One transaction: the duplicate check and the write (a store is one commit).
                async with self._db.session() as session:
                    earlier = await self._earlier(session, key_mac, content_mac)
                    if earlier is not None:
                        await self._audit(session, "memory.store", earlier.memory.id, created=False)
                        return earlier
                    now = datetime.now(UTC)
                    memory = Memory(
                        id=new_id(),
                        tenant=self.tenant,
                        version=1,
                        kind=document["kind"],
                        importance=document["importance"],
                        content_mac=content_mac,
                        idempotency_mac=key_mac,
                        created_at=now,
                        updated_at=now,
                        expires_at=new.expires_at,
                        deleted_at=None,
                    )
                    session.add(memory)
                    indexed = self._write_version(session, memory, document, now)
                    await self._audit(session, "memory.store", memory.id, created=True)
                    result = StoreResult(memory=self._view(memory, document), created=True)
            except IntegrityError:
                continue
            self._written(indexed)
            return result
        raise InvalidArgumentError("the memory could not be stored: concurrent writers; try again")

    async def update(self, memory_id: str, changes: dict[str, Any]) -> MemoryView:
        """A new version with `changes` applied (content, kind, tags, project, importance,
        expires_at); the earlier versions stay in the history."""
        async with self._db.session() as session:
            memory = await self._held(session, memory_id)
            document = self._open(memory)
            merged = NewMemory(
                content=changes.get("content", document["content"]),
                kind=changes.get("kind", document["kind"]),
                tags=changes.get("tags", document["tags"]),
                project=changes.get("project", document["project"]),
                session_id=document["session_id"],
                importance=changes.get("importance", document["importance"]),
                expires_at=changes.get("expires_at", memory.expires_at),
            )
            updated = self._document(merged)
            content_mac = self._vault.mac(self.tenant, "content", updated["content"])
            if content_mac != memory.content_mac:
                holder = await session.scalar(
                    select(Memory.id).where(Memory.tenant == self.tenant, Memory.content_mac == content_mac)
                )
                if holder is not None:
                    raise InvalidArgumentError(f"memory {holder} already holds this content")
            now = datetime.now(UTC)
            memory.version += 1
            memory.kind = updated["kind"]
            memory.importance = updated["importance"]
            memory.content_mac = content_mac
            memory.expires_at = merged.expires_at
            memory.updated_at = now
            await drop_index(session, memory.id)
            indexed = self._write_version(session, memory, updated, now)
            await self._audit(session, "memory.update", memory.id, version=memory.version)
            view = self._view(memory, updated)
        self._written(indexed)
        return view

    async def delete(self, memory_id: str) -> MemoryView:
        """Gone from every listing and index at once; its sealed versions stay until the purge."""
        async with self._db.session() as session:
            memory = await self._held(session, memory_id)
            document = self._open(memory)
            memory.deleted_at = memory.changed_at = datetime.now(UTC)
            memory.content_mac = None
            outbox.record_tombstone(
                session,
                tenant=self.tenant,
                memory_id=memory.id,
                last_version=memory.version,
                at=memory.deleted_at,
            )
            await drop_index(session, memory.id)
            await session.execute(delete(MemoryVector).where(MemoryVector.memory_id == memory.id))
            await self._audit(session, "memory.delete", memory.id)
            view = self._view(memory, document)
        if self._meaning is not None:
            self._meaning.forget(self.tenant, memory_id)
        if self._keywords is not None:
            self._keywords.forget(self.tenant, memory_id)
        return view

    # --- reads ----------------------------------------------------------------------------

    async def get(self, memory_id: str) -> MemoryView:
        async with self._db.session() as session:
            memory = await self._live(session, memory_id)
            await self._audit(session, "memory.read", memory.id)
            return self._view(memory, self._open(memory))

    async def history(self, memory_id: str) -> MemoryHistory:
        async with self._db.session() as session:
            memory = await self._live(session, memory_id)
            rows = await session.scalars(
                select(MemoryVersion)
                .where(MemoryVersion.tenant == self.tenant, MemoryVersion.memory_id == memory.id)
                .order_by(MemoryVersion.version)
            )
            await self._audit(session, "memory.history", memory.id)
            versions = []
            for row in rows:
                document = self._vault.open(
                    MEMORY_RECORD, self.tenant, row.memory_id, row.version, row.sealed
                )
                versions.append(
                    MemoryVersionView(
                        version=row.version,
                        content=document["content"],
                        kind=document["kind"],
                        tags=document["tags"],
                        author=row.author,
                        created_at=row.created_at,
                    )
                )
        return MemoryHistory(id=memory.id, versions=versions)

    async def listing(self, filters: Filters, *, limit: int = 20, cursor: str | None = None) -> MemoryPage:
        """Newest first."""
        check_limit(limit)
        pages = Cursor("memories", self.tenant, *self._fingerprint(filters))
        after = pages.decode(cursor)
        query = self._narrowed(select(Memory), filters)
        async with self._db.session() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            if after is not None:
                query = query.where(Memory.id < after)
            rows = list(await session.scalars(query.order_by(Memory.id.desc()).limit(limit + 1)))
            views = [self._view(m, self._open(m)) for m in rows[:limit]]
            await self._audit(session, "memory.list", None, returned=len(views))
        return MemoryPage(
            memories=views, total=int(total or 0), next_cursor=pages.after(rows, limit, lambda m: m.id)
        )

    async def stats(self) -> MemoryStats:
        async with self._db.session() as session:
            rows = await session.execute(
                self._narrowed(select(Memory.kind, func.count()), Filters()).group_by(Memory.kind)
            )
            by_kind = {str(kind): int(count) for kind, count in rows}
            deleted = await session.scalar(
                select(func.count()).where(Memory.tenant == self.tenant, Memory.deleted_at.is_not(None))
            )
        return MemoryStats(
            total=sum(by_kind.values()), by_kind=by_kind, deleted_awaiting_purge=int(deleted or 0)
        )

    # --- helpers ----------------------------------------------------------------------------

    def _written(self, indexed: IndexedMemory) -> None:
        """A version committed: into the keyword index now, to the embedding workers soon."""
        if self._keywords is not None:
            self._keywords.put(self.tenant, indexed)
        if self._meaning is not None:
            self._meaning.wake()

    def _idempotency_mac(self, key: str | None) -> bytes | None:
        if key is None:
            return None
        if not 1 <= len(key) <= 200:
            raise InvalidArgumentError("idempotency_key: 1 to 200 characters")
        return self._vault.mac(self.tenant, "idempotency", key)

    async def _earlier(
        self, session: AsyncSession, key_mac: bytes | None, content_mac: bytes
    ) -> StoreResult | None:
        """What an earlier store left that makes this one a no-op, if anything."""
        if key_mac is not None:
            by_key = await session.scalar(
                select(Memory).where(Memory.tenant == self.tenant, Memory.idempotency_mac == key_mac)
            )
            if by_key is not None:
                return StoreResult(
                    memory=self._view(by_key, self._open(by_key)),
                    created=False,
                    reason="a store with this idempotency_key was done before; this is its result",
                )
        same = await session.scalar(
            select(Memory).where(Memory.tenant == self.tenant, Memory.content_mac == content_mac)
        )
        if same is None:
            return None
        return StoreResult(
            memory=self._view(same, self._open(same)),
            created=False,
            reason="a memory with this content exists; update it to change it",
        )

    async def _live(self, session: AsyncSession, memory_id: str) -> Memory:
        memory = None
        if isinstance(memory_id, str) and 0 < len(memory_id) <= 64:
            memory = await session.scalar(
                self._narrowed(select(Memory), Filters())
                .where(Memory.id == memory_id)
                .execution_options(populate_existing=True)
            )
        if memory is None:
            raise NotFoundError(
                f"no memory {memory_id[:64]!r}" if isinstance(memory_id, str) else "no memory"
            )
        return memory

    async def _held(self, session: AsyncSession, memory_id: str) -> Memory:
        """The live memory, held until `session` ends: a concurrent update or delete of it waits
        for ours, or we for theirs and then read it again. So the version read is the version
        changed, and one memory's outbox entries follow its versions (a tombstone after all)."""
        for _ in range(3):
            memory = await self._live(session, memory_id)
            held = await session.execute(
                update(Memory)
                .where(Memory.id == memory.id, Memory.version == memory.version, Memory.deleted_at.is_(None))
                .values(version=Memory.version)
                .execution_options(synchronize_session=False)
            )
            if getattr(held, "rowcount", 0) == 1:
                return memory
        raise InvalidArgumentError(f"memory {memory_id} is being changed by others; try again")

    def _document(self, new: NewMemory) -> dict[str, Any]:
        return checked_document(new, self._limits)

    def _write_version(
        self, session: AsyncSession, memory: Memory, document: dict[str, Any], now: datetime
    ) -> IndexedMemory:
        return write_version(session, self._vault, memory, document, created_at=now, author=self._author)
