"""The store's copy of every record's embedding (`akosha_vectors`), sealed like its document.

The search index writes a vector here as soon as it has made it, so a restart (or a crash)
loads vectors instead of embedding every record again, and the warm and cold tiers, which keep
only int8 codes in memory or on disk, rescore their candidates in float32 from here. A row
moves forward only (a newer version, or the same version under another model); `accessed_at`,
when a reader last saw the record, is what the aging policy keeps records hot by.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Insert, Table, and_, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.akosha.keyed import keys_in
from mahavishnu.akosha.models import LIVE, Record, StoredVector
from mahavishnu.platform import Database
from mahavishnu.platform.crypto import KeyRing, associated_data

__all__ = ["Placement", "Vector", "VectorStore", "split_key"]

Vector = NDArray[np.float32]

_ROWS_PER_STATEMENT = 500
_LOAD_BATCH = 2000


@functools.cache
def _save_statement(dialect: str) -> Insert:
    """The upsert that moves a stored vector forward only (a newer version, or the same version
    under another model); executed with a list of rows, compiled once."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, StoredVector.__table__)
    statement = insert(table)
    sent, held = statement.excluded, table.c
    return statement.on_conflict_do_update(
        index_elements=[held.source, held.memory_id],
        set_={name: sent[name] for name in ("version", "model", "sealed")},
        where=or_(sent.version > held.version, and_(sent.version == held.version, sent.model != held.model)),
    )


def split_key(key: str) -> tuple[str, str]:
    """(source, memory_id) of an index key `source/memory_id`."""
    source, memory_id = key.split("/", 1)
    return source, memory_id


@dataclass(frozen=True, slots=True)
class Placement:
    """What the aging policy needs of a stored vector, without opening it."""

    key: str
    version: int
    accessed_at: datetime | None


class VectorStore:
    def __init__(self, db: Database, ring: KeyRing, *, model_id: str, dimensions: int) -> None:
        self._db = db
        self._ring = ring
        self.model_id = model_id
        self.dimensions = dimensions

    def _binding(self, source: str, memory_id: str, version: int) -> bytes:
        return associated_data("akosha", "vector", source, memory_id, str(version), self.model_id)

    def _seal(self, key: str, version: int, vector: Vector) -> bytes:
        source, memory_id = split_key(key)
        data = np.asarray(vector, dtype="<f4").tobytes()
        return self._ring.encrypt(data, associated=self._binding(source, memory_id, version))

    def _open(self, source: str, memory_id: str, version: int, sealed: bytes) -> Vector:
        data = self._ring.decrypt(sealed, associated=self._binding(source, memory_id, version))
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    async def save(self, rows: Sequence[tuple[str, int, Vector]]) -> None:
        """Keep each (key, version, vector), unless the store has a newer version's already."""
        async with self._db.session() as session:
            await self.save_in(session, rows)

    async def save_in(self, session: AsyncSession, rows: Sequence[tuple[str, int, Vector]]) -> None:
        """`save`, in the caller's transaction (ingest keeps a sent vector with its record)."""
        values = []
        for key, version, vector in rows:
            source, memory_id = split_key(key)
            values.append(
                {
                    "source": source,
                    "memory_id": memory_id,
                    "version": version,
                    "model": self.model_id,
                    "sealed": self._seal(key, version, vector),
                }
            )
        if values:
            await session.execute(_save_statement(self._db.dialect), values)

    async def placements(self) -> AsyncIterator[list[Placement]]:
        """Every stored vector of this model that is current (its record live, same version),
        in batches, in key order."""
        after = ("", "")
        while True:
            async with self._db.session() as session:
                rows = (
                    await session.execute(
                        select(
                            StoredVector.source,
                            StoredVector.memory_id,
                            StoredVector.version,
                            StoredVector.accessed_at,
                        )
                        .join(
                            Record,
                            and_(
                                Record.source == StoredVector.source,
                                Record.memory_id == StoredVector.memory_id,
                                Record.version == StoredVector.version,
                            ),
                        )
                        .where(
                            Record.state == LIVE,
                            StoredVector.model == self.model_id,
                            tuple_(StoredVector.source, StoredVector.memory_id) > after,
                        )
                        .order_by(StoredVector.source, StoredVector.memory_id)
                        .limit(_LOAD_BATCH)
                    )
                ).all()
            if rows:
                yield [Placement(f"{r.source}/{r.memory_id}", r.version, r.accessed_at) for r in rows]
            if len(rows) < _LOAD_BATCH:
                return
            after = (rows[-1].source, rows[-1].memory_id)

    async def vectors(self, keys: Sequence[str]) -> dict[str, tuple[int, Vector]]:
        """The stored (version, vector) of each of `keys` that has one of this model."""
        found: dict[str, tuple[int, Vector]] = {}
        pairs = [split_key(key) for key in keys]
        async with self._db.session() as session:
            for start in range(0, len(pairs), _ROWS_PER_STATEMENT):
                rows = await session.execute(
                    select(
                        StoredVector.source, StoredVector.memory_id, StoredVector.version, StoredVector.sealed
                    ).where(
                        StoredVector.model == self.model_id,
                        keys_in(
                            StoredVector.source,
                            StoredVector.memory_id,
                            pairs[start : start + _ROWS_PER_STATEMENT],
                        ),
                    )
                )
                for source, memory_id, version, sealed in rows:
                    found[f"{source}/{memory_id}"] = (version, self._open(source, memory_id, version, sealed))
        return found

    async def touch(self, accessed: Mapping[str, datetime]) -> None:
        """Record when readers last saw these records (only ever later)."""
        async with self._db.session() as session:
            for key, when in accessed.items():
                source, memory_id = split_key(key)
                await session.execute(
                    update(StoredVector)
                    .where(
                        StoredVector.source == source,
                        StoredVector.memory_id == memory_id,
                        or_(StoredVector.accessed_at.is_(None), StoredVector.accessed_at < when),
                    )
                    .values(accessed_at=when)
                )
