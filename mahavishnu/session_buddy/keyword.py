"""Keyword ranking over blind tokens: Okapi BM25, computed by the database.

The words are HMACs (`vault.token`), so the database cannot rank text, but BM25 needs no
text: a word's document frequency, its occurrences in each memory and each memory's length
are all in the token rows. One query reads the frequencies, a second sums every memory's
score over the query's tokens, in SQL, and returns a page: no candidate list is carried into
Python, however common a word is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import Float, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform.search.bm25 import K1, B, KeywordRanking
from mahavishnu.session_buddy.models import MemoryTerm

__all__ = ["keyword_scores"]


async def keyword_scores(
    session: AsyncSession,
    tenant: str,
    tokens: Sequence[bytes],
    live: Select[str, int],
    *,
    offset: int,
    limit: int,
) -> KeywordRanking:
    """The page at `offset`, best first (newest first among equals), among the memories `live`
    selects (their `id` and `term_count`)."""
    unique = list(dict.fromkeys(tokens))
    live_rows = live.subquery()
    stats = (
        await session.execute(select(func.count(), func.avg(live_rows.c.term_count)).select_from(live_rows))
    ).one()
    documents, average_length = int(stats[0] or 0), float(stats[1] or 0.0)
    if documents == 0:
        return KeywordRanking([], 0)
    frequencies = dict(
        (
            await session.execute(
                select(MemoryTerm.token, func.count())
                .where(MemoryTerm.tenant == tenant, MemoryTerm.token.in_(unique))
                .group_by(MemoryTerm.token)
            )
        ).all()
    )
    weights = {
        token: math.log(1 + (documents - df + 0.5) / (df + 0.5)) for token, df in frequencies.items() if df
    }
    if not weights:
        return KeywordRanking([], 0)
    occurrences = cast(MemoryTerm.occurrences, Float)
    length = cast(live_rows.c.term_count, Float) / max(average_length, 1.0)
    score = func.sum(
        case(weights, value=MemoryTerm.token, else_=0.0)
        * occurrences
        * (K1 + 1)
        / (occurrences + K1 * (1 - B + B * length))
    ).label("score")
    matching = func.count().over().label("matching")  # groups before the limit: the total
    ranked = (
        select(MemoryTerm.memory_id, score, matching)
        .join(live_rows, live_rows.c.id == MemoryTerm.memory_id)
        .where(MemoryTerm.tenant == tenant, MemoryTerm.token.in_(list(weights)))
        .group_by(MemoryTerm.memory_id)
        .order_by(score.desc(), MemoryTerm.memory_id.desc())
        .offset(offset)
        .limit(limit)
    )
    found = (await session.execute(ranked)).all()
    rows = [(str(memory_id), float(value)) for memory_id, value, _ in found]
    total = int(found[0][2]) if found else 0
    if not found and offset:  # a page past the end: the total still counts every match
        total = int(
            await session.scalar(
                select(func.count(func.distinct(MemoryTerm.memory_id)))
                .join(live_rows, live_rows.c.id == MemoryTerm.memory_id)
                .where(MemoryTerm.tenant == tenant, MemoryTerm.token.in_(list(weights)))
            )
            or 0
        )
    return KeywordRanking(rows, total, frozenset(weights), sum(weights.values()))
