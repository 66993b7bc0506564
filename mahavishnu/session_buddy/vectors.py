"""Sealed embeddings in the database: which memories still need one, writing a batch, and
reading them back into the in-process index.

A vector is sealed with the vault like a memory version, bound to its tenant, memory id,
version and model id: a vector copied to another memory, or read as another model's, does
not open. Any tenant's memories are embedded here (the workers serve every tenant), but each
vector goes only into its own tenant's part of the index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from mahavishnu.platform import Database
from mahavishnu.session_buddy.models import Memory, MemoryVector
from mahavishnu.session_buddy.vault import Vault

__all__ = ["Pending", "load_vectors", "pending", "pending_count", "write_vectors"]

RECORD = "memory-vector"
_LOAD_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Pending:
    """A memory whose current version has no vector of the current model yet."""

    memory_id: str
    tenant: str
    version: int
    sealed: bytes
    """The memory's sealed current version (opened by the worker to read its content)."""


def _record(model_id: str) -> str:
    return f"{RECORD}:{model_id}"


def seal_vector(
    vault: Vault, model_id: str, tenant: str, memory_id: str, version: int, vector: NDArray[np.float32]
) -> bytes:
    return vault.seal_bytes(_record(model_id), tenant, memory_id, version, vector.astype("<f4").tobytes())


def open_vector(vault: Vault, row: MemoryVector) -> NDArray[np.float32]:
    data = vault.open_bytes(_record(row.model_id), row.tenant, row.memory_id, row.version, row.sealed)
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _needing_vectors(model_id: str) -> Select[str, str, int, bytes]:
    """Live memories (any tenant) with no vector of `model_id` at their current version."""
    return (
        select(Memory.id, Memory.tenant, Memory.version, Memory.sealed)
        .outerjoin(MemoryVector, MemoryVector.memory_id == Memory.id)
        .where(
            Memory.deleted_at.is_(None),
            or_(
                MemoryVector.memory_id.is_(None),
                MemoryVector.version != Memory.version,
                MemoryVector.model_id != model_id,
            ),
        )
    )


async def pending(db: Database, model_id: str, *, limit: int, skip: Collection[str] = ()) -> list[Pending]:
    """The first `limit` memories needing a vector of `model_id`, less those in `skip`."""
    query = _needing_vectors(model_id).order_by(Memory.id).limit(limit)
    if skip:
        query = query.where(Memory.id.not_in(list(skip)))
    async with db.session() as session:
        return [Pending(*row) for row in (await session.execute(query)).all()]


async def pending_count(db: Database, model_id: str) -> int:
    """How many memories wait for a vector (the embedding queue's depth)."""
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(_needing_vectors(model_id).subquery()))
    return int(count or 0)


async def write_vectors(
    db: Database, vault: Vault, model_id: str, made: Sequence[tuple[Pending, NDArray[np.float32]]]
) -> list[tuple[Pending, NDArray[np.float32]]]:
    """Store the vectors of `made` whose memory is still live at the embedded version (the
    memory rows are locked first, so a concurrent delete or update waits or wins); answers
    the ones written."""
    if not made:
        return []
    ids = [p.memory_id for p, _ in made]
    now = datetime.now(UTC)
    try:
        async with db.session() as session:
            current = dict(
                (
                    await session.execute(
                        select(Memory.id, Memory.version)
                        .where(Memory.id.in_(ids), Memory.deleted_at.is_(None))
                        .with_for_update()
                    )
                ).all()
            )
            kept = [(p, v) for p, v in made if current.get(p.memory_id) == p.version]
            await session.execute(
                delete(MemoryVector).where(MemoryVector.memory_id.in_([p.memory_id for p, _ in kept]))
            )
            session.add_all(
                MemoryVector(
                    memory_id=p.memory_id,
                    tenant=p.tenant,
                    version=p.version,
                    model_id=model_id,
                    sealed=seal_vector(vault, model_id, p.tenant, p.memory_id, p.version, v),
                    embedded_at=now,
                )
                for p, v in kept
            )
    except IntegrityError:  # another process wrote one of them first: it is done, or next round
        return []
    return kept


async def load_vectors(
    db: Database, vault: Vault, model_id: str, *, since: datetime | None = None
) -> AsyncIterator[tuple[str, str, int, NDArray[np.float32]]]:
    """(tenant, memory id, version, vector) of every stored vector of `model_id` whose memory is
    live at that version (only those written at or after `since`, when given), in batches."""
    after = ""
    while True:
        query = (
            select(MemoryVector)
            .join(Memory, Memory.id == MemoryVector.memory_id)
            .where(
                MemoryVector.model_id == model_id,
                MemoryVector.memory_id > after,
                and_(Memory.deleted_at.is_(None), Memory.version == MemoryVector.version),
            )
            .order_by(MemoryVector.memory_id)
            .limit(_LOAD_BATCH)
        )
        if since is not None:
            query = query.where(MemoryVector.embedded_at >= since)
        async with db.session() as session:
            rows = list(await session.scalars(query))
        for row in rows:
            yield row.tenant, row.memory_id, row.version, open_vector(vault, row)
        if len(rows) < _LOAD_BATCH:
            return
        after = rows[-1].memory_id
