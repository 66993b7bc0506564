"""Is Akosha's search index consistent with its store? What readiness asks before a deploy: how
many live records have a current stored vector (the rest wait to be embedded: a backlog, not a
fault), whether any stored vector outlived its record (a tombstone must purge it), and whether
every cold segment file opens under the key ring (one that does not is rebuilt from the store
at the next start, but says something is wrong with the key or the disk)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, func, select

from mahavishnu.akosha.cold_tier import audit_segments
from mahavishnu.akosha.models import LIVE, Record, StoredVector
from mahavishnu.platform import Database
from mahavishnu.platform.crypto import KeyRing

__all__ = ["IndexReport", "index_report"]


@dataclass(frozen=True, slots=True)
class IndexReport:
    live: int
    """Records not tombstoned."""
    embedded: int
    """Live records with a stored vector of the current model and version."""
    orphaned: int
    """Stored vectors whose record is tombstoned: a delete that left something behind."""
    cold_segments: int
    unreadable_segments: int

    @property
    def unembedded(self) -> int:
        return self.live - self.embedded


async def index_report(db: Database, ring: KeyRing, *, model_id: str, cold_folder: Path) -> IndexReport:
    same_record = and_(Record.source == StoredVector.source, Record.memory_id == StoredVector.memory_id)
    async with db.session() as session:
        live = await session.scalar(select(func.count()).select_from(Record).where(Record.state == LIVE))
        embedded = await session.scalar(
            select(func.count())
            .select_from(StoredVector)
            .join(Record, and_(same_record, Record.version == StoredVector.version))
            .where(Record.state == LIVE, StoredVector.model == model_id)
        )
        orphaned = await session.scalar(
            select(func.count())
            .select_from(StoredVector)
            .join(Record, same_record)
            .where(Record.state != LIVE)
        )
    segments = audit_segments(cold_folder, ring, model_id)
    return IndexReport(
        live=int(live or 0),
        embedded=int(embedded or 0),
        orphaned=int(orphaned or 0),
        cold_segments=segments[0],
        unreadable_segments=segments[1],
    )
