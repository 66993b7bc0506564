"""`search_all_systems`: one ranking over the records of every source the caller may read, by
keyword (BM25), by meaning (cosine of embeddings) or both fused as Session-Buddy fuses them
(`platform/search/fusion.py`). The index (`record_index.py`) ranks; the store, narrowed to the
caller's scope again, answers what is shown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from mahavishnu.akosha.keyed import keys_in
from mahavishnu.akosha.keys import open_document
from mahavishnu.akosha.metrics import SearchMetrics
from mahavishnu.akosha.models import LIVE, Record
from mahavishnu.akosha.record_index import Entry, RecordIndex, key_of, token_of
from mahavishnu.akosha.scope import in_scope, readable_sources
from mahavishnu.akosha.vector_store import split_key
from mahavishnu.platform import Database, InvalidArgumentError, Principal, UnavailableError
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.platform.search.fusion import fuse, identifier_words, keyword_weight
from mahavishnu.platform.search.terms import terms

__all__ = ["MODES", "CrossSearch", "CrossSearchHit", "CrossSearchPage", "SearchMode"]

SearchMode = Literal["hybrid", "keyword", "semantic"]
MODES: tuple[SearchMode, ...] = ("hybrid", "keyword", "semantic")
POOL = 50
"""Candidates each of keyword and meaning brings to a fused ranking, beyond the page asked for."""
SHOWN_CHARS = 2000
"""Content shown per hit; longer content is cut and the hit marked `truncated`."""


class CrossSearchHit(BaseModel):
    source: str = Field(description="The system the memory came from.")
    tenant: str
    memory_id: str
    version: int
    session_id: str | None
    project: str | None
    kind: str
    tags: list[str]
    created_at: datetime = Field(description="When the source wrote the memory.")
    score: float
    content: str
    truncated: bool = Field(default=False, description=f"Content cut at {SHOWN_CHARS} characters.")


class CrossSearchPage(BaseModel):
    hits: list[CrossSearchHit]
    total: int = Field(description="Records the ranking found, in all pages.")
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last.")


class CrossSearch:
    def __init__(
        self, db: Database, ring: KeyRing, index: RecordIndex, metrics: SearchMetrics | None = None
    ) -> None:
        self._metrics = metrics
        self._db = db
        self._ring = ring
        self._index = index

    async def search(
        self,
        principal: Principal,
        query: str,
        *,
        sources: Sequence[str] = (),
        projects: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        mode: str = "hybrid",
        limit: int = 10,
        cursor: str | None = None,
    ) -> CrossSearchPage:
        check_limit(limit)
        if mode not in MODES:
            raise InvalidArgumentError(f"mode: one of {', '.join(MODES)}")
        if not terms(query):
            raise InvalidArgumentError("query: give at least one word to search for")
        if since is not None and until is not None and since >= until:
            raise InvalidArgumentError("since: must be before until")
        if not self._index.ready:
            raise UnavailableError("the search index is still loading; try again shortly")
        filters = [sorted(sources), sorted(projects), _iso(since), _iso(until)]
        pages = Cursor("search_all_systems", mode, query, *filters)
        offset = pages.offset(cursor)
        began = time.perf_counter()
        among = self._among(principal, sources, projects, since, until)
        ranked, total = await self._ranked(query, mode, among, offset + limit + 1)
        hits = await self._hits(principal, ranked[offset : offset + limit])
        self._index.seen(key_of(h.source, h.memory_id) for h in hits)
        if self._metrics is not None:
            self._metrics.duration.labels(mode).observe(time.perf_counter() - began)
        more = len(ranked) > offset + limit
        return CrossSearchPage(
            hits=hits, total=total, next_cursor=pages.encode(str(offset + limit)) if more else None
        )

    def _among(
        self,
        principal: Principal,
        sources: Sequence[str],
        projects: Sequence[str],
        since: datetime | None,
        until: datetime | None,
    ) -> set[str] | None:
        """The keys a ranking may answer: the caller's scope and the filters; None for all."""
        readable = readable_sources(principal)
        allowed = set(sources) if sources else None
        if readable is not None:
            allowed = set(readable) if allowed is None else allowed & readable
        if allowed is None and not projects and since is None and until is None:
            return None
        wanted_projects = set(projects)

        def admits(entry: Entry) -> bool:
            return (
                (allowed is None or entry.source in allowed)
                and (not wanted_projects or entry.project in wanted_projects)
                and (since is None or entry.created_at >= since)
                and (until is None or entry.created_at < until)
            )

        return {key for key, entry in self._index.entries.items() if admits(entry)}

    async def _ranked(
        self, query: str, mode: str, among: set[str] | None, wanted: int
    ) -> tuple[list[tuple[str, float]], int]:
        """The first `wanted` (key, score), best first, and how many the ranking found."""
        index = self._index
        tokens = [token_of(w) for w in terms(query)]
        embedder, vectors = index.embedder, index.vectors
        if embedder is None or vectors is None:
            if mode == "semantic":
                raise UnavailableError("search by meaning is not enabled on this server")
            mode = "keyword"
        if mode == "keyword" or embedder is None or vectors is None:
            ranking = index.postings.rank(tokens, now=0.0, among=among, limit=wanted)
            return ranking.rows, ranking.total
        asked = (await asyncio.to_thread(embedder.embed, [query]))[0]
        if mode == "semantic":
            near = await vectors.nearest(asked, wanted, among=among)
            embedded = (
                len(vectors) if among is None else sum(vectors.version_of(k) is not None for k in among)
            )
            return [(n.memory_id, n.similarity) for n in near], embedded
        count = wanted + POOL
        ranking = index.postings.rank(tokens, now=0.0, among=among, limit=count)
        cosines = {n.memory_id: n.similarity for n in await vectors.nearest(asked, count, among=among)}
        cosines.update(await vectors.similarity([i for i, _ in ranking.rows if i not in cosines], asked))
        identifiers = {token_of(w) for w in identifier_words(query)}
        weight = keyword_weight(ranking, identifier_matched=bool(identifiers & ranking.matched))
        fused = fuse(ranking.rows, cosines, weight)
        return fused[:wanted], len(fused)

    async def _hits(self, principal: Principal, ranked: list[tuple[str, float]]) -> list[CrossSearchHit]:
        """The page's records from the store, in scope and live (the index may lag a tombstone)."""
        if not ranked:
            return []
        pairs = [split_key(key) for key, _ in ranked]
        async with self._db.session() as session:
            rows = {
                key_of(r.source, r.memory_id): r
                for r in await session.scalars(
                    select(Record).where(
                        in_scope(principal),
                        Record.state == LIVE,
                        keys_in(Record.source, Record.memory_id, pairs),
                    )
                )
            }
        hits = []
        for key, score in ranked:
            row = rows.get(key)
            if row is None or row.sealed is None:
                continue
            document = open_document(
                self._ring, row.source, row.tenant, row.memory_id, row.version, row.sealed
            )
            hits.append(
                CrossSearchHit(
                    source=row.source,
                    tenant=row.tenant,
                    memory_id=row.memory_id,
                    version=row.version,
                    session_id=document.session_id,
                    project=document.project,
                    kind=document.kind,
                    tags=document.tags,
                    created_at=document.created_at,
                    score=round(score, 6),
                    content=document.content[:SHOWN_CHARS],
                    truncated=len(document.content) > SHOWN_CHARS,
                )
            )
        return hits


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
