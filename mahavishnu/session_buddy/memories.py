"""One tenant's memories: the only way to memory rows, and every query here is narrowed to the
tenant it was made for. Tools build one per call from the caller's token (`Principal.tenant`),
so no argument of any tool can name another tenant's data.

Writes are single transactions. Storing is idempotent twice over: a retry with the same
`idempotency_key` answers the first result, and the same content stored again answers the
memory that holds it (nothing is replaced, nothing deleted). Both rest on unique constraints,
so concurrent writers in any number of processes cannot double a memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVarTuple

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, InvalidArgumentError, NotFoundError, UnavailableError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.session_buddy.checks import label, text
from mahavishnu.session_buddy.fusion import fuse, identifier_words, keyword_weight
from mahavishnu.session_buddy.keyword import KeywordRanking, keyword_scores
from mahavishnu.session_buddy.models import Memory, MemoryLabel, MemoryTerm, MemoryVector, MemoryVersion
from mahavishnu.session_buddy.tenant_store import TenantStore
from mahavishnu.session_buddy.terms import terms
from mahavishnu.session_buddy.vault import MEMORY_RECORD, Vault
from mahavishnu.session_buddy.vector_index import Neighbour
from mahavishnu.session_buddy.views import (
    KINDS,
    MemoryHistory,
    MemoryPage,
    MemoryStats,
    MemoryVersionView,
    MemoryView,
    SearchHit,
    SearchPage,
    StoreResult,
)

if TYPE_CHECKING:
    from mahavishnu.session_buddy.meaning import Meaning

__all__ = ["Filters", "Limits", "Memories", "NewMemory", "SearchMode"]

SearchMode = Literal["hybrid", "keyword", "semantic"]
MODES: tuple[SearchMode, ...] = ("hybrid", "keyword", "semantic")
POOL = 50
"""Candidates each of keyword and meaning brings to a fused ranking, beyond the page asked for."""

_Columns = TypeVarTuple("_Columns")


@dataclass(frozen=True, slots=True)
class Limits:
    max_content_chars: int
    max_tags: int
    max_tag_chars: int = 64


@dataclass(frozen=True, slots=True)
class NewMemory:
    content: str
    kind: str = "note"
    tags: Sequence[str] = ()
    project: str | None = None
    session_id: str | None = None
    importance: float = 0.5
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """Narrow a listing or a search: every given condition must hold."""

    kinds: Sequence[str] = ()
    tags: Sequence[str] = field(default=())
    project: str | None = None
    session_id: str | None = None


class Memories(TenantStore):
    def __init__(
        self,
        db: Database,
        vault: Vault,
        limits: Limits,
        *,
        tenant: str,
        author: str,
        meaning: Meaning | None = None,
    ) -> None:
        super().__init__(db, vault, tenant=tenant, author=author)
        self._limits = limits
        self._meaning = meaning
        """Search by meaning; None: keyword search only (and nothing is embedded)."""

    # --- writes -------------------------------------------------------------------------

    async def store(self, new: NewMemory, *, idempotency_key: str | None = None) -> StoreResult:
        document = self._document(new)
        content_mac = self._vault.mac(self.tenant, "content", document["content"])
        key_mac = self._idempotency_mac(idempotency_key)
        for _ in range(3):  # a concurrent writer of the same key or content wins the constraint
            async with self._db.session() as session:
                earlier = await self._earlier(session, key_mac, content_mac)
                if earlier is not None:
                    await self._audit(session, "memory.store", earlier.memory.id, created=False)
                    return earlier
            try:
                async with self._db.session() as session:
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
                    self._write_version(session, memory, document, now)
                    await self._audit(session, "memory.store", memory.id, created=True)
                    result = StoreResult(memory=self._view(memory, document), created=True)
            except IntegrityError:
                continue
            self._wake()
            return result
        raise InvalidArgumentError("the memory could not be stored: concurrent writers; try again")

    async def update(self, memory_id: str, changes: dict[str, Any]) -> MemoryView:
        """A new version with `changes` applied (content, kind, tags, project, importance,
        expires_at); the earlier versions stay in the history."""
        async with self._db.session() as session:
            memory = await self._live(session, memory_id)
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
            await session.execute(delete(MemoryTerm).where(MemoryTerm.memory_id == memory.id))
            await session.execute(delete(MemoryLabel).where(MemoryLabel.memory_id == memory.id))
            self._write_version(session, memory, updated, now)
            await self._audit(session, "memory.update", memory.id, version=memory.version)
            view = self._view(memory, updated)
        self._wake()
        return view

    async def delete(self, memory_id: str) -> MemoryView:
        """Gone from every listing and index at once; its sealed versions stay until the purge."""
        async with self._db.session() as session:
            memory = await self._live(session, memory_id)
            document = self._open(memory)
            memory.deleted_at = datetime.now(UTC)
            memory.content_mac = None
            await session.execute(delete(MemoryTerm).where(MemoryTerm.memory_id == memory.id))
            await session.execute(delete(MemoryLabel).where(MemoryLabel.memory_id == memory.id))
            await session.execute(delete(MemoryVector).where(MemoryVector.memory_id == memory.id))
            await self._audit(session, "memory.delete", memory.id)
            view = self._view(memory, document)
        if self._meaning is not None:
            self._meaning.forget(self.tenant, memory_id)
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

    async def search_keyword(
        self, query: str, filters: Filters, *, limit: int = 10, cursor: str | None = None
    ) -> SearchPage:
        return await self.search(query, filters, mode="keyword", limit=limit, cursor=cursor)

    async def search(
        self,
        query: str,
        filters: Filters,
        *,
        mode: str = "hybrid",
        limit: int = 10,
        cursor: str | None = None,
    ) -> SearchPage:
        """Best first, by keyword (BM25 over blind tokens, `keyword.py`), by meaning (cosine of
        embeddings, `meaning.py`) or both fused (`fusion.py`). Whatever the vector index
        answers is re-checked in SQL (live, current version, filters); a memory not embedded
        yet is found by keyword in hybrid mode. Audit entries name the mode, not the query."""
        check_limit(limit)
        if mode not in MODES:
            raise InvalidArgumentError(f"mode: one of {', '.join(MODES)}")
        words = terms(query)
        if not words and (mode == "keyword" or not query.strip()):
            raise InvalidArgumentError("query: give at least one word to search for")
        pages = Cursor("search", self.tenant, mode, query, *self._fingerprint(filters))
        offset = _offset(pages.decode(cursor))
        vector = await self._query_vector(query, mode)
        tokens = [self._vault.token(self.tenant, "word", w) for w in words]
        async with self._db.session() as session:
            if mode == "keyword" or vector is None:
                live = self._narrowed(select(Memory.id, Memory.term_count), filters)
                ranking = await keyword_scores(
                    session, self.tenant, tokens, live, offset=offset, limit=limit + 1
                )
                ranked, total = ranking.rows, ranking.total
            else:
                ranked = await self._fused(session, query, tokens, vector, filters, mode, offset + limit + 1)
                total = len(ranked)
                ranked = ranked[offset:]
            found = {
                m.id: m
                for m in await session.scalars(
                    select(Memory).where(
                        Memory.tenant == self.tenant, Memory.id.in_([r[0] for r in ranked[:limit]])
                    )
                )
            }
            hits = [
                SearchHit(memory=self._view(found[i], self._open(found[i])), score=round(score, 6))
                for i, score in ranked[:limit]
                if i in found
            ]
            await self._audit(session, "memory.search", None, mode=mode, returned=len(hits))
        more = len(ranked) > limit
        return SearchPage(
            hits=hits, total=total, next_cursor=pages.encode(str(offset + limit)) if more else None
        )

    async def _query_vector(self, query: str, mode: str) -> NDArray[np.float32] | None:
        """The query's embedding (made in a thread), or None when keyword search must do:
        keyword mode, or hybrid before the index is loaded."""
        if mode == "keyword":
            return None
        if self._meaning is None:
            if mode == "semantic":
                raise UnavailableError("search by meaning is not enabled on this server")
            return None
        if mode == "hybrid" and not self._meaning.ready:
            return None
        return await self._meaning.query_vector(query)

    async def _fused(
        self,
        session: AsyncSession,
        query: str,
        tokens: list[bytes],
        vector: NDArray[np.float32],
        filters: Filters,
        mode: str,
        wanted: int,
    ) -> list[tuple[str, float]]:
        """The first `wanted` (memory id, score) by meaning, or fused with keywords."""
        assert self._meaning is not None  # _query_vector answered a vector
        if mode == "semantic":
            return list((await self._nearest(session, vector, filters, wanted)).items())
        count = wanted + POOL
        live = self._narrowed(select(Memory.id, Memory.term_count), filters)
        ranking = (
            await keyword_scores(session, self.tenant, tokens, live, offset=0, limit=count)
            if tokens
            else KeywordRanking([], 0)
        )
        cosines = await self._nearest(session, vector, filters, count)
        missing = [i for i, _ in ranking.rows if i not in cosines]
        cosines.update(self._meaning.vectors_of(self.tenant).similarity(missing, vector))
        identifiers = {self._vault.token(self.tenant, "word", w) for w in identifier_words(query)}
        weight = keyword_weight(ranking, identifier_matched=bool(identifiers & ranking.matched))
        return fuse(ranking.rows, cosines, weight)[:wanted]

    async def _nearest(
        self, session: AsyncSession, vector: NDArray[np.float32], filters: Filters, count: int
    ) -> dict[str, float]:
        """Cosines of the `count` live memories (meeting `filters`) nearest `vector`, best first,
        each re-checked in SQL at the version its vector was made from."""
        assert self._meaning is not None
        vectors = self._meaning.vectors_of(self.tenant)
        if any(self._fingerprint(filters)):  # narrowed: an exact scan of just those memories
            among = list(await session.scalars(self._narrowed(select(Memory.id), filters)))
            return await self._current(session, vectors.nearest(vector, count, among=among), filters)
        asked = 2 * count + 10
        while True:
            near = vectors.nearest(vector, asked)
            current = await self._current(session, near, filters)
            if len(current) >= count or len(near) < asked:
                return dict(list(current.items())[:count])
            asked *= 4

    async def _current(
        self, session: AsyncSession, near: list[Neighbour], filters: Filters
    ) -> dict[str, float]:
        if not near:
            return {}
        versions = dict(
            (
                await session.execute(
                    self._narrowed(select(Memory.id, Memory.version), filters).where(
                        Memory.id.in_([n.memory_id for n in near])
                    )
                )
            ).all()
        )
        return {n.memory_id: n.similarity for n in near if versions.get(n.memory_id) == n.version}

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

    def _wake(self) -> None:
        if self._meaning is not None:
            self._meaning.wake()

    def _document(self, new: NewMemory) -> dict[str, Any]:
        """The checked, normalised document a version seals; InvalidArgumentError names the field."""
        content = text("content", new.content, self._limits.max_content_chars)
        if new.kind not in KINDS:
            raise InvalidArgumentError(f"kind: one of {', '.join(KINDS)}")
        if not 0.0 <= new.importance <= 1.0:
            raise InvalidArgumentError("importance: between 0 and 1")
        tags = sorted({label("tags", t, self._limits.max_tag_chars) for t in new.tags})
        if len(tags) > self._limits.max_tags:
            raise InvalidArgumentError(f"tags: at most {self._limits.max_tags}")
        project = None if new.project is None else label("project", new.project, 200)
        session_id = None if new.session_id is None else label("session_id", new.session_id, 64)
        if new.expires_at is not None and new.expires_at.tzinfo is None:
            raise InvalidArgumentError("expires_at: give a time zone (e.g. 2027-01-01T00:00:00Z)")
        return {
            "content": content,
            "kind": new.kind,
            "tags": tags,
            "project": project,
            "session_id": session_id,
            "importance": float(new.importance),
        }

    def _write_version(
        self, session: AsyncSession, memory: Memory, document: dict[str, Any], now: datetime
    ) -> None:
        """Seal `document` as the memory's current version and index it (in `session`)."""
        sealed = self._vault.seal(MEMORY_RECORD, self.tenant, memory.id, memory.version, document)
        words = terms(document["content"])
        memory.sealed = sealed
        memory.term_count = sum(words.values())
        session.add(
            MemoryVersion(
                memory_id=memory.id,
                version=memory.version,
                tenant=self.tenant,
                sealed=sealed,
                created_at=now,
                author=self._author,
            )
        )
        session.add_all(
            MemoryTerm(
                memory_id=memory.id,
                token=self._vault.token(self.tenant, "word", word),
                tenant=self.tenant,
                occurrences=count,
            )
            for word, count in words.items()
        )
        labels = {self._vault.token(self.tenant, "tag", t) for t in document["tags"]}
        for domain in ("project", "session_id"):
            if document[domain] is not None:
                labels.add(self._vault.token(self.tenant, domain, document[domain]))
        session.add_all(MemoryLabel(memory_id=memory.id, token=t, tenant=self.tenant) for t in labels)

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
                self._narrowed(select(Memory), Filters()).where(Memory.id == memory_id)
            )
        if memory is None:
            raise NotFoundError(
                f"no memory {memory_id[:64]!r}" if isinstance(memory_id, str) else "no memory"
            )
        return memory

    def _narrowed(self, query: Select[*_Columns], filters: Filters) -> Select[*_Columns]:
        """This tenant's live memories (not deleted, not expired) meeting `filters`."""
        now = datetime.now(UTC)
        conditions: list[ColumnElement[bool]] = [
            Memory.tenant == self.tenant,
            Memory.deleted_at.is_(None),
            or_(Memory.expires_at.is_(None), Memory.expires_at > now),
        ]
        if filters.kinds:
            unknown = sorted(set(filters.kinds) - set(KINDS))
            if unknown:
                raise InvalidArgumentError(f"kinds: {unknown[0]!r} is not one of {', '.join(KINDS)}")
            conditions.append(Memory.kind.in_(list(filters.kinds)))
        labels = [("tag", label("tags", t, self._limits.max_tag_chars)) for t in filters.tags]
        if filters.project is not None:
            labels.append(("project", label("project", filters.project, 200)))
        if filters.session_id is not None:
            labels.append(("session_id", label("session_id", filters.session_id, 64)))
        for domain, value in labels:
            token = self._vault.token(self.tenant, domain, value)
            conditions.append(
                Memory.id.in_(
                    select(MemoryLabel.memory_id).where(
                        MemoryLabel.tenant == self.tenant, MemoryLabel.token == token
                    )
                )
            )
        return query.where(and_(*conditions))

    @staticmethod
    def _fingerprint(filters: Filters) -> list[object]:
        return [sorted(filters.kinds), sorted(filters.tags), filters.project, filters.session_id]

    def _open(self, memory: Memory) -> dict[str, Any]:
        return self._vault.open(MEMORY_RECORD, self.tenant, memory.id, memory.version, memory.sealed)

    @staticmethod
    def _view(memory: Memory, document: dict[str, Any]) -> MemoryView:
        return MemoryView(
            id=memory.id,
            version=memory.version,
            kind=document["kind"],
            content=document["content"],
            tags=document["tags"],
            project=document["project"],
            session_id=document["session_id"],
            importance=document["importance"],
            created_at=memory.created_at,
            updated_at=memory.updated_at,
            expires_at=memory.expires_at,
            deleted_at=memory.deleted_at,
        )


def _offset(after: str | None) -> int:
    if after is None:
        return 0
    if not after.isdigit() or len(after) > 9:
        raise InvalidArgumentError("cursor is not one this server issued")
    return int(after)
