"""Is the search index consistent with the store? What readiness asks before a deploy: every
live memory's blind-index rows add up to the words its current version holds, and how many
live memories still wait for a vector of the current model (a backlog, not a fault)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from mahavishnu.platform import Database
from mahavishnu.session_buddy.models import Memory, MemoryTerm
from mahavishnu.session_buddy.vectors import pending_count

__all__ = ["IndexReport", "index_report"]


@dataclass(frozen=True, slots=True)
class IndexReport:
    live: int
    """Memories not deleted."""
    mismatched: int
    """Live memories whose keyword rows do not add up to their word count: search would miss
    or misrank them (a write outside the store, or a damaged restore)."""
    unembedded: int
    """Live memories without a vector of the current model yet (the workers' backlog)."""


async def index_report(db: Database, model_id: str) -> IndexReport:
    indexed = (
        select(func.coalesce(func.sum(MemoryTerm.occurrences), 0))
        .where(MemoryTerm.memory_id == Memory.id)
        .scalar_subquery()
    )
    live = Memory.deleted_at.is_(None)
    async with db.session() as session:
        total = await session.scalar(select(func.count()).where(live))
        mismatched = await session.scalar(select(func.count()).where(live, Memory.term_count != indexed))
    return IndexReport(
        live=int(total or 0), mismatched=int(mismatched or 0), unembedded=await pending_count(db, model_id)
    )
