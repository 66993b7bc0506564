"""Akosha's in-process search index over every live record of every source: BM25 postings
(`platform/search/postings.py`) and embeddings in tiers (`tiers.py`), keyed by
`source/memory_id`, with what a filter needs of each record (source, project, time).

The keyword postings live only in memory (the store stays sealed at rest): rebuilt from the
store at start, told of this process's ingests as they commit, and following other processes'
by polling `received_at`. Embedding runs in the background, off the ingest path; until a record
has its vector, it is found by keyword. A vector its sender made with Akosha's model is kept at
ingest (`ingest.py`) and joins the tiers at the next turn of the embedding loop, unembedded.
Each vector made is kept in the store, sealed (`vector_store.py`), so a restart loads vectors
instead of making them again, and so does a replica following another's ingests; the vectors
sit in tiers by age and use, and an aging run every `aging_seconds` moves them. Whatever the
index answers is read back from the store, in the caller's scope, before it is shown
(`cross_search.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, tuple_

from mahavishnu.akosha.cold_tier import ColdTier
from mahavishnu.akosha.ingest import usable_vector
from mahavishnu.akosha.keys import open_document
from mahavishnu.akosha.models import LIVE, Record
from mahavishnu.akosha.tiers import AgingPolicy, Tier, TieredVectors
from mahavishnu.akosha.vector_store import Vector, VectorStore
from mahavishnu.akosha.wire import MemoryDocument, Tombstone, Upsert
from mahavishnu.platform import Database, get_logger
from mahavishnu.platform.background import woken_or_after
from mahavishnu.platform.crypto import DecryptionError, KeyRing
from mahavishnu.platform.search.embeddings import Embedder
from mahavishnu.platform.search.postings import IndexedMemory, TenantPostings
from mahavishnu.platform.search.terms import terms

__all__ = ["Entry", "RecordIndex", "key_of"]

log = get_logger("akosha.index")

_FOLLOW_SLACK = timedelta(seconds=5)
_LOAD_BATCH = 1000
_EMBED_CHARS = 4000
"""Content kept for embedding: the model reads its first 256 tokens, about 1,000 characters."""


def key_of(source: str, memory_id: str) -> str:
    """One key per record ('/' is in neither a source name nor a memory id)."""
    return f"{source}/{memory_id}"


def token_of(word: str) -> bytes:
    return word.encode()


@dataclass(frozen=True, slots=True)
class Entry:
    """What a filter needs of a record, without opening it."""

    source: str
    version: int
    project: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Tiering:
    """Where cold segments go, how records age, how often an aging run looks."""

    cold_folder: Path
    policy: AgingPolicy
    aging_seconds: float = 3600.0


class RecordIndex:
    def __init__(
        self,
        db: Database,
        ring: KeyRing,
        tiering: Tiering,
        *,
        poll_seconds: float = 1.0,
        embed_batch: int = 64,
        on_aged: Callable[[Mapping[Tier, int]], None] | None = None,
    ) -> None:
        self._db = db
        self._ring = ring
        self._tiering = tiering
        self._poll = poll_seconds
        self._batch = embed_batch
        self._on_aged = on_aged
        self.postings = TenantPostings()
        self.entries: dict[str, Entry] = {}
        self.embedder: Embedder | None = None
        self.vectors: TieredVectors | None = None
        self._vectors_loaded = False
        self._unembedded: dict[str, str] = {}
        self._given: dict[str, tuple[int, Vector]] = {}
        """Vectors senders made (and ingest stored), waiting for the embedding loop to index."""
        self._wake = asyncio.Event()
        self.ready = False
        """True once rebuilt from the store: searches answer from then on."""

    def use_embedder(self, embedder: Embedder) -> None:
        """Search by meaning from now on: stored vectors are loaded, the rest queued to embed."""
        self.embedder = embedder
        store = VectorStore(self._db, self._ring, model_id=embedder.model_id, dimensions=embedder.dimensions)
        cold = ColdTier(
            self._tiering.cold_folder, self._ring, model_id=embedder.model_id, dimensions=embedder.dimensions
        )
        self.vectors = TieredVectors(store, cold)
        self._wake.set()

    def vector_store(self) -> VectorStore | None:
        """Where ingest keeps the vectors senders made; None until the model is loaded."""
        return self.vectors.store if self.vectors is not None else None

    def seen(self, keys: Iterable[str]) -> None:
        """Readers saw these records now: the next aging run keeps (or brings) them hot."""
        if self.vectors is not None:
            self.vectors.touch(keys, datetime.now(UTC))

    def tier_sizes(self) -> dict[Tier, int]:
        return self.vectors.sizes() if self.vectors is not None else {}

    def current(self, key: str) -> tuple[int, datetime] | None:
        """The version and creation time of a live record the index holds."""
        entry = self.entries.get(key)
        return None if entry is None else (entry.version, entry.created_at)

    async def load_vectors(self) -> int:
        """Fill the tiers from the store's vectors (once, before embedding anything new)."""
        if self.vectors is None or self._vectors_loaded:
            return 0
        loaded = await self.vectors.load(self.current, self._tiering.policy, datetime.now(UTC))
        for key in loaded:
            self._unembedded.pop(key, None)
        for key in [k for k in self.vectors.hot.keys() + self.vectors.warm.keys() if k not in self.entries]:
            self.vectors.remove(key)  # tombstoned while loading
        self._vectors_loaded = True
        log.info("vectors_loaded", **self.vectors.sizes(), unembedded=len(self._unembedded))
        return len(loaded)

    async def age(self, now: datetime | None = None) -> dict[Tier, int]:
        """One aging run as of `now` (default: now): move the vectors whose tier the policy now
        names differently."""
        if self.vectors is None or not self._vectors_loaded:
            return {}
        moved = await self.vectors.age(self.current, self._tiering.policy, now or datetime.now(UTC))
        if any(moved.values()):
            log.info("vectors_aged", moved=moved, **self.vectors.sizes())
        if self._on_aged is not None:
            self._on_aged(moved)
        return moved

    @property
    def unembedded(self) -> int:
        if self.embedder is None:
            return len(self.entries)
        return len(self._unembedded) + len(self._given)

    def put(
        self,
        source: str,
        memory_id: str,
        version: int,
        document: MemoryDocument,
        vector: Vector | None = None,
    ) -> None:
        """Index a record's version, unless the index holds this version or a newer one;
        `vector` is its embedding when the sender made one (else the record is embedded here)."""
        key = key_of(source, memory_id)
        held = self.entries.get(key)
        if held is not None and held.version >= version:
            return
        words = terms(document.content)
        self.postings.put(
            IndexedMemory(
                memory_id=key,
                version=version,
                length=sum(words.values()),
                expires_at=None,
                words={token_of(w): n for w, n in words.items()},
            )
        )
        self.entries[key] = Entry(source, version, document.project, document.created_at)
        if vector is None:
            self._unembedded[key] = document.content[:_EMBED_CHARS]
            self._given.pop(key, None)
        else:
            self._given[key] = (version, vector)
            self._unembedded.pop(key, None)
        self._wake.set()

    def remove(self, source: str, memory_id: str, version: int) -> None:
        """A tombstone at `version`: forget the record unless a newer version is held."""
        key = key_of(source, memory_id)
        held = self.entries.get(key)
        if held is None or held.version > version:
            return
        del self.entries[key]
        self.postings.remove(key)
        self._unembedded.pop(key, None)
        self._given.pop(key, None)
        if self.vectors is not None:
            self.vectors.remove(key)

    def note(self, records: Iterable[Upsert | Tombstone]) -> None:
        """Records this process just committed (in any order: versions decide)."""
        store = self.vector_store()
        for record in records:
            if isinstance(record, Upsert):
                vector = usable_vector(record, store)  # (an Upsert is its own document)
                self.put(record.source, record.memory_id, record.version, record, vector)
            else:
                self.remove(record.source, record.memory_id, record.version)

    def take(self, rows: Iterable[Record]) -> None:
        """Rows as the store holds them now (any state)."""
        for row in rows:
            if row.state == LIVE and row.sealed is not None:
                try:
                    document = open_document(
                        self._ring, row.source, row.tenant, row.memory_id, row.version, row.sealed
                    )
                except DecryptionError:  # a damaged row must not keep every other one out
                    log.error("record_unreadable", source=row.source, memory_id=row.memory_id)
                    continue
                self.put(row.source, row.memory_id, row.version, document)
            else:
                self.remove(row.source, row.memory_id, row.version)

    async def rebuild(self) -> int:
        after: tuple[str, str] = ("", "")
        count = 0
        while True:
            async with self._db.session() as session:
                rows = list(
                    await session.scalars(
                        select(Record)
                        .where(Record.state == LIVE, tuple_(Record.source, Record.memory_id) > after)
                        .order_by(Record.source, Record.memory_id)
                        .limit(_LOAD_BATCH)
                    )
                )
            self.take(rows)
            count += len(rows)
            if len(rows) < _LOAD_BATCH:
                self.ready = True
                return count
            after = (rows[-1].source, rows[-1].memory_id)

    async def follow(self, since: datetime) -> None:
        """Take in what arrived since `since` (minus a slack), through any process."""
        async with self._db.session() as session:
            rows = list(
                await session.scalars(select(Record).where(Record.received_at >= since - _FOLLOW_SLACK))
            )
        self.take(rows)

    async def embed_pending(self) -> int:
        """Embed one batch of records waiting for a vector, keep the vectors in the store, then
        in the index; answers how many."""
        embedder = self.embedder
        if embedder is None or self.vectors is None:
            return 0
        await self.load_vectors()
        given = await self._take_given()
        batch = list(self._unembedded.items())[: self._batch]
        if not batch:
            return given
        loaded = await self._load_stored([key for key, _ in batch])
        batch = [(key, text) for key, text in batch if key not in loaded]
        if not batch:
            return given + len(loaded)
        texts = [text for _, text in batch]
        vectors = await asyncio.to_thread(embedder.embed, texts)
        made = []
        for (key, text), vector in zip(batch, vectors, strict=True):
            entry = self.entries.get(key)
            if entry is not None and self._unembedded.get(key) is text:  # not replaced meanwhile
                made.append((key, entry.version, vector))
        await self.vectors.store.save(made)
        await self._index(made)
        return given + len(loaded) + len(batch)

    async def _index(self, rows: list[tuple[str, int, Vector]]) -> set[str]:
        """Put the vectors of records still waiting for them at these versions in the hot tier;
        answers their keys. The add runs off the event loop: see `_drop_superseded`."""
        assert self.vectors is not None
        fresh = [row for row in rows if self._waits_for(row[0], row[1])]
        if not fresh:
            return set()
        for key, _, _ in fresh:
            self._unembedded.pop(key, None)
        await self.vectors.add(fresh)
        self._drop_superseded(fresh)
        return {key for key, _, _ in fresh}

    def _waits_for(self, key: str, version: int) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.version == version and key in self._unembedded

    async def _load_stored(self, keys: list[str]) -> set[str]:
        """Index the vectors the store already holds for these records at the versions indexed,
        and answer their keys: another process (another replica on the same database) kept a
        sender's vector or embedded the record itself, so it is loaded, not embedded again."""
        assert self.vectors is not None
        stored = await self.vectors.store.vectors(keys)
        return await self._index([(key, version, vector) for key, (version, vector) in stored.items()])

    async def _take_given(self) -> int:
        """Index every vector senders made since the last turn, in one bulk add."""
        if not self._given or self.vectors is None:
            return 0
        given, self._given = self._given, {}
        rows = [(key, version, vector) for key, (version, vector) in given.items()]
        await self.vectors.add(rows)
        self._drop_superseded(rows)
        return len(given)

    def _drop_superseded(self, rows: list[tuple[str, int, Vector]]) -> None:
        """Take out the vectors just added whose record was replaced or tombstoned while the
        add ran (off the event loop); a newer version's vector stays."""
        assert self.vectors is not None
        for key, version, _ in rows:
            entry = self.entries.get(key)
            if (entry is None or entry.version != version) and self.vectors.hot.version_of(key) == version:
                self.vectors.hot.remove(key)

    async def run(self) -> None:
        """Rebuild, then follow and embed until cancelled."""
        started = datetime.now(UTC)
        count = await self.rebuild()
        log.info("record_index_rebuilt", records=count)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._following(started), name="akosha-index-follow")
            group.create_task(self._embedding(), name="akosha-index-embedding")
            group.create_task(self._aging(), name="akosha-index-aging")

    async def _following(self, since: datetime) -> None:
        while True:
            await asyncio.sleep(self._poll)
            now = datetime.now(UTC)
            try:
                await self.follow(since)
            except Exception as exc:  # an outage must not end the loop
                log.warning("index_follow_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            since = now

    async def _embedding(self) -> None:
        while True:
            self._wake.clear()
            try:
                done = await self.embed_pending()
            except Exception as exc:  # a failed batch is tried again at the next wake
                log.warning("embedding_failed", error=f"{type(exc).__name__}: {exc}")
                done = 0
            if not done:
                await woken_or_after(self._wake, self._poll)

    async def _aging(self) -> None:
        while True:
            await asyncio.sleep(self._tiering.aging_seconds)
            try:
                await self.age()
            except Exception as exc:  # an outage must not end the loop
                log.warning("aging_failed", error=f"{type(exc).__name__}: {exc}")
