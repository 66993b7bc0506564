"""Taking in a batch: each memory's row moves forward to the newest version the batch names,
and never back, in one transaction.

"Newer" is the order (version, tombstone over upsert), so the outcome of any set of batches is
the same whatever their order and however often each arrives: a replay changes nothing, an
older version after a newer one changes nothing, a tombstone deletes every version up to its
own, and no upsert older than a tombstone brings the memory back. The rule is enforced by the
database itself (`INSERT ... ON CONFLICT DO UPDATE ... WHERE newer`), so concurrent batches for
one memory cannot interleave a read and a write. A tombstone also deletes the memory's stored
vector (`akosha_vectors`) in the same transaction: nothing of a deleted memory stays sealed in
the store. An upsert that moved its row forward and carries an embedding of the model Akosha
runs has the vector kept beside it, in the same transaction. The answer is given only after the
commit: what Akosha acknowledged survives a `kill -9`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from mahavishnu.akosha.keys import seal_document
from mahavishnu.akosha.models import LIVE, TOMBSTONED, Record, StoredVector
from mahavishnu.akosha.vector_store import Vector, VectorStore
from mahavishnu.akosha.wire import Tombstone, Upsert
from mahavishnu.platform import Database
from mahavishnu.platform.crypto import KeyRing

__all__ = ["ROWS_PER_STATEMENT", "Counts", "ingest"]

ROWS_PER_STATEMENT = 500
"""Rows per INSERT: 7 parameters each stays far below SQLite's and asyncpg's 32,767."""


@dataclass(frozen=True, slots=True)
class Counts:
    accepted: int
    """Records that moved the store forward."""
    unchanged: int
    """Records it had already, or had something newer than (a replay, an old version, a record
    a newer one in the same batch supersedes)."""
    moved: frozenset[str]
    """The memory ids whose rows moved forward (what the search index should take in)."""


def _rank(record: Upsert | Tombstone) -> tuple[int, int]:
    return record.version, 1 if isinstance(record, Tombstone) else 0


def _newest(records: Sequence[Upsert | Tombstone]) -> list[Upsert | Tombstone]:
    """The newest record of each memory in the batch (one statement may touch a row once)."""
    newest: dict[tuple[str, str], Upsert | Tombstone] = {}
    for record in records:
        key = (record.source, record.memory_id)
        if key not in newest or _rank(record) > _rank(newest[key]):
            newest[key] = record
    return list(newest.values())


def _row(ring: KeyRing, record: Upsert | Tombstone, now: datetime) -> dict[str, Any]:
    sealed = None
    if isinstance(record, Upsert):
        sealed = seal_document(
            ring, record.source, record.tenant, record.memory_id, record.version, record.document()
        )
    return {
        "source": record.source,
        "memory_id": record.memory_id,
        "tenant": record.tenant,
        "version": record.version,
        "state": LIVE if sealed is not None else TOMBSTONED,
        "sealed": sealed,
        "received_at": now,
    }


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        yield rows[start : start + ROWS_PER_STATEMENT]


async def _forward(session: AsyncSession, dialect: str, rows: list[dict[str, Any]]) -> list[str]:
    """Insert the rows, or move existing ones forward where the row sent is newer; answers the
    memory ids of the rows it inserted or moved (RETURNING yields only those)."""
    return list((await session.scalars(_forward_statement(dialect), rows)).all())


@functools.cache
def _forward_statement(dialect: str) -> ReturningInsert[Any]:
    """The upsert, without values: executed with a list of rows, SQLAlchemy compiles it once and
    sends the rows as multi-row VALUES pages ("insertmanyvalues"), RETURNING included. (With the
    rows in `.values()`, compiling the statement anew cost more than running it.)"""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, Record.__table__)
    statement = insert(table)
    sent, held = statement.excluded, table.c
    newer = or_(
        sent.version > held.version,
        and_(sent.version == held.version, sent.state == TOMBSTONED, held.state == LIVE),
    )
    return statement.on_conflict_do_update(
        index_elements=[held.source, held.memory_id],
        set_={name: sent[name] for name in ("tenant", "version", "state", "sealed", "received_at")},
        where=newer,
    ).returning(held.memory_id)


def usable_vector(record: Upsert | Tombstone, store: VectorStore | None) -> Vector | None:
    """The vector `record` carries, when it is of the model (and size) `store` keeps."""
    if store is None or not isinstance(record, Upsert) or record.embedding is None:
        return None
    if record.embedding.model != store.model_id:
        return None
    vector = record.embedding.normalised
    return vector if vector.shape == (store.dimensions,) else None


async def ingest(
    db: Database,
    ring: KeyRing,
    records: Sequence[Upsert | Tombstone],
    vectors: VectorStore | None = None,
) -> Counts:
    """Apply a checked batch (`wire.check_batch`: one source) in one transaction; answers after
    the commit. `vectors` keeps the embeddings sent of its model (None: keep none)."""
    now = datetime.now(UTC)
    newest = _newest(records)
    rows = [_row(ring, record, now) for record in newest]
    moved: set[str] = set()
    async with db.session() as session:
        for chunk in _chunks(rows):
            moved.update(await _forward(session, db.dialect, chunk))
        sent = [(r, usable_vector(r, vectors)) for r in newest if r.memory_id in moved]
        given = [(f"{r.source}/{r.memory_id}", r.version, v) for r, v in sent if v is not None]
        if vectors is not None and given:
            await vectors.save_in(session, given)
        for row in rows:
            if row["state"] == TOMBSTONED:
                await session.execute(
                    delete(StoredVector).where(
                        StoredVector.source == row["source"],
                        StoredVector.memory_id == row["memory_id"],
                        StoredVector.version <= row["version"],
                    )
                )
    return Counts(accepted=len(moved), unchanged=len(records) - len(moved), moved=frozenset(moved))
