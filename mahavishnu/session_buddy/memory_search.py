"""Searching one tenant's memories: by keyword (BM25 over blind tokens, `keyword.py`), by
meaning (cosine of embeddings, `meaning.py`) or both fused (`fusion.py`). `Memories` adds the
writes and reads; this part only ranks, re-checks in SQL and opens the hits."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Literal, TypeVarTuple

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import InvalidArgumentError, UnavailableError
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.platform.search.bm25 import KeywordRanking
from mahavishnu.platform.search.fusion import (
    ANCHOR_NEIGHBOURS,
    anchors,
    fuse,
    fuse_anchored,
    give_way_to_near_duplicates,
    identifier_words,
    keyword_weight,
    rest_of,
)
from mahavishnu.platform.search.terms import content_words, terms
from mahavishnu.platform.search.vector_index import Neighbour
from mahavishnu.session_buddy.keyword import keyword_scores
from mahavishnu.session_buddy.memory_records import (
    Filters,
    fingerprint,
    live,
    memory_view,
    open_memory,
)
from mahavishnu.session_buddy.models import Memory, MemoryTerm
from mahavishnu.session_buddy.tenant_store import MemoryStore
from mahavishnu.session_buddy.views import MemoryView, SearchHit, SearchPage

__all__ = ["MODES", "MemorySearch", "SearchMode"]

SearchMode = Literal["hybrid", "keyword", "semantic"]
MODES: tuple[SearchMode, ...] = ("hybrid", "keyword", "semantic")
POOL = 50
"""Candidates each of keyword and meaning brings to a fused ranking, beyond the page asked for."""
_RECHECKS = 3
"""Rankings of the keyword index a search tries before it ranks in SQL: each one after the
first follows a page that held a stale memory (just refreshed), which is rare."""

_Columns = TypeVarTuple("_Columns")


class MemorySearch(MemoryStore):
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
        max_tokens: int | None = None,
    ) -> SearchPage:
        """Best first, by keyword (BM25 over blind tokens, `keyword.py`), by meaning (cosine of
        embeddings, `meaning.py`) or both fused (`fusion.py`). Whatever the vector index
        answers is re-checked in SQL (live, current version, filters); a memory not embedded
        yet is found by keyword in hybrid mode. `max_tokens` bounds the page (`_within`): the
        hits that do not fit are the next page's. Audit entries name the mode, not the query."""
        check_limit(limit)
        if mode not in MODES:
            raise InvalidArgumentError(f"mode: one of {', '.join(MODES)}")
        words = terms(query)
        if not words and (mode == "keyword" or not query.strip()):
            raise InvalidArgumentError("query: give at least one word to search for")
        pages = Cursor("search", self.tenant, mode, query, *self._fingerprint(filters))
        offset = pages.offset(cursor)
        vector = await self._query_vector(query, mode)
        tokens = [self._vault.token(self.tenant, "word", w) for w in words]
        async with self._db.session() as session:
            if mode == "keyword" or vector is None:
                ranking = await self._keyword_ranking(
                    session, tokens, filters, offset=offset, limit=limit + 1
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
            places = [place for place, (i, _) in enumerate(ranked[:limit]) if i in found]
            hits = [
                SearchHit(memory=self._view(found[i], self._open(found[i])), score=round(score, 6))
                for i, score in ranked[:limit]
                if i in found
            ]
            if max_tokens is not None:
                hits = _within(hits, max_tokens)
            await self._audit(session, "memory.search", None, mode=mode, returned=len(hits))
        used = places[len(hits) - 1] + 1 if hits and len(hits) < len(places) else limit
        more = len(ranked) > used
        return SearchPage(
            hits=hits, total=total, next_cursor=pages.encode(str(offset + used)) if more else None
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
        ranking = (
            await self._keyword_ranking(session, tokens, filters, offset=0, limit=count)
            if tokens
            else KeywordRanking([], 0)
        )
        cosines = await self._nearest(session, vector, filters, count)
        nearest = list(cosines)[:ANCHOR_NEIGHBOURS]
        missing = [i for i, _ in ranking.rows if i not in cosines]
        cosines.update(self._meaning.vectors_of(self.tenant).similarity(missing, vector))
        identifiers = {self._vault.token(self.tenant, "word", w) for w in identifier_words(query)}
        identifier_matched = bool(identifiers & ranking.matched)
        ranked = None
        if not identifier_matched:
            ranked = await self._anchored(session, query, ranking, nearest, vector, cosines, filters, count)
        if ranked is None:
            weight = keyword_weight(ranking, identifier_matched=identifier_matched)
            ranked = fuse(ranking.rows, cosines, weight)
        top = ranked[: 2 * wanted]  # what could reach the page once near-duplicates give way
        held = await self._tokens_of(session, [i for i, _ in top])
        return give_way_to_near_duplicates(top, held)[:wanted]

    async def _anchored(
        self,
        session: AsyncSession,
        query: str,
        ranking: KeywordRanking,
        nearest: list[str],
        vector: NDArray[np.float32],
        cosines: dict[str, float],
        filters: Filters,
        count: int,
    ) -> list[tuple[str, float]] | None:
        """The candidates ranked by the question's anchor words and the meaning of its rest
        (`fusion.py`), or None when the question has no anchor (or nothing besides)."""
        assert self._meaning is not None
        words = {w: self._vault.token(self.tenant, "word", w) for w in content_words(query)}
        if len(words) < 2:
            return None
        held = await self._tokens_of(session, nearest, among=words.values())
        found = anchors(words, [held.get(i, frozenset()) for i in nearest])
        rest = rest_of(query, found) if found else None
        if rest is None:
            return None
        rest_vector = await self._meaning.query_vector(rest)
        rest_cosines = await self._nearest(session, rest_vector, filters, count)
        candidates = list(dict.fromkeys([i for i, _ in ranking.rows] + list(cosines) + list(rest_cosines)))
        vectors = self._meaning.vectors_of(self.tenant)
        cosines.update(vectors.similarity([i for i in rest_cosines if i not in cosines], vector))
        rest_cosines.update(vectors.similarity([i for i in candidates if i not in rest_cosines], rest_vector))
        anchor_tokens = [words[w] for w in found]
        held = await self._tokens_of(session, candidates, among=anchor_tokens)
        return fuse_anchored(candidates, held, anchor_tokens, rest_cosines, cosines)

    async def _keyword_ranking(
        self, session: AsyncSession, tokens: list[bytes], filters: Filters, *, offset: int, limit: int
    ) -> KeywordRanking:
        """BM25 from the in-process index (`postings.py`) once it is ready, else in SQL. The
        index's page is re-checked against the rows (live, current version): a memory it holds
        stale is refreshed and the page ranked again, so what it answers is what SQL would."""
        index = self._keywords.of(self.tenant) if self._keywords is not None else None
        if index is not None:
            among = None
            if any(self._fingerprint(filters)):  # narrowed: rank just those memories
                among = set(await session.scalars(self._narrowed(select(Memory.id), filters)))
            for _ in range(_RECHECKS):
                ranking = index.rank(tokens, now=time.time(), among=among, offset=offset, limit=limit)
                page = [i for i, _ in ranking.rows]
                current = (
                    dict(
                        (
                            await session.execute(
                                self._narrowed(select(Memory.id, Memory.version), Filters()).where(
                                    Memory.id.in_(page)
                                )
                            )
                        ).all()
                    )
                    if page
                    else {}
                )
                stale = [i for i in page if current.get(i) != index.version_of(i)]
                if not stale:
                    return ranking
                assert self._keywords is not None
                await self._keywords.refresh(session, stale, self.tenant)
        live = self._narrowed(select(Memory.id, Memory.term_count), filters)
        return await keyword_scores(session, self.tenant, tokens, live, offset=offset, limit=limit)

    async def _tokens_of(
        self, session: AsyncSession, memory_ids: list[str], *, among: Collection[bytes] | None = None
    ) -> dict[str, frozenset[bytes]]:
        """The word tokens each of `memory_ids` (this tenant's: they come from its rankings)
        holds, only those of `among` when given; a memory holding none is left out. Selected by
        memory id alone, so the primary key answers (with the tenant too, SQLite reads the
        tenant's whole (tenant, token) index instead)."""
        if not memory_ids:
            return {}
        rows = select(MemoryTerm.memory_id, MemoryTerm.token).where(MemoryTerm.memory_id.in_(memory_ids))
        if among is not None:
            rows = rows.where(MemoryTerm.token.in_(list(among)))
        held: dict[str, set[bytes]] = {}
        for memory_id, token in await session.execute(rows):
            held.setdefault(memory_id, set()).add(token)
        return {i: frozenset(tokens) for i, tokens in held.items()}

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

    # --- shared with Memories ----------------------------------------------------------------

    def _narrowed(self, query: Select[*_Columns], filters: Filters) -> Select[*_Columns]:
        return live(query, self._vault, self._limits, self.tenant, filters)

    def _fingerprint(self, filters: Filters) -> list[object]:
        return fingerprint(filters)

    def _open(self, memory: Memory) -> dict[str, Any]:
        return open_memory(self._vault, memory)

    @staticmethod
    def _view(memory: Memory, document: dict[str, Any]) -> MemoryView:
        return memory_view(memory, document)


TOKEN_CHARS = 4
"""Characters per token, as `max_tokens` counts them (an estimate: no tokenizer is assumed)."""
HIT_TOKENS = 60
"""What one hit costs besides its content: id, kind, tags, times, score, as JSON."""


def _within(hits: list[SearchHit], max_tokens: int) -> list[SearchHit]:
    """The first hits whose estimated size fits `max_tokens`; the first one always, its content
    cut to fit (and marked `truncated`) when it alone is too long."""
    kept: list[SearchHit] = []
    spent = 0
    for hit in hits:
        cost = HIT_TOKENS + -(-len(hit.memory.content) // TOKEN_CHARS)
        if kept and spent + cost > max_tokens:
            break
        if not kept and cost > max_tokens:
            room = max(0, max_tokens - HIT_TOKENS) * TOKEN_CHARS
            memory = hit.memory.model_copy(update={"content": hit.memory.content[:room]})
            hit = hit.model_copy(update={"memory": memory, "truncated": True})
            cost = max_tokens
        kept.append(hit)
        spent += cost
    return kept
