"""The outbox to Akosha: every new memory version and every deletion is queued here in the
transaction that makes it (so none is lost, whatever fails after), and read back in order as
the records the pusher sends (`pusher.py`).

Entries hold ids only. An upsert is opened from its sealed version when it is read, so nothing
a caller wrote sits in the queue in the clear. When the embedding workers already made the
version's vector, it goes along (`embedding`: model id and base64 float32), so Akosha, when it
runs the same model, need not embed the memory again. A deletion is a tombstone whose version is the
one after the memory's last: it supersedes every upsert of the memory, and Akosha, idempotent
on (source, memory, version), never mistakes it for one.

An entry leaves the queue once Akosha accepted it (`settle`); reading and settling are separate
transactions, so a crash in between sends that batch again, which Akosha ignores.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database
from mahavishnu.session_buddy.models import Memory, MemoryVector, MemoryVersion, OutboxEntry
from mahavishnu.session_buddy.vault import MEMORY_RECORD, Vault
from mahavishnu.session_buddy.vectors import open_vector

__all__ = ["Backlog", "Batch", "Op", "backlog", "next_batch", "record", "record_tombstone", "settle"]

Op = Literal["upsert", "tombstone"]


def record(session: AsyncSession, op: Op, *, tenant: str, memory_id: str, version: int, at: datetime) -> None:
    """Queue `op` for the memory's `version`, in `session`'s transaction."""
    session.add(OutboxEntry(tenant=tenant, memory_id=memory_id, version=version, op=op, created_at=at))


def record_tombstone(
    session: AsyncSession, *, tenant: str, memory_id: str, last_version: int, at: datetime
) -> None:
    """Queue the memory's deletion: the version after its last one."""
    record(session, "tombstone", tenant=tenant, memory_id=memory_id, version=last_version + 1, at=at)


@dataclass(frozen=True, slots=True)
class Batch:
    records: list[dict[str, Any]]
    """What to send, in queue order."""
    entries: list[int]
    """The entries the batch settles once sent: those sent, and upserts a later entry covers."""


@dataclass(frozen=True, slots=True)
class Backlog:
    count: int
    oldest_at: datetime | None


async def next_batch(db: Database, vault: Vault, *, source: str, limit: int, max_bytes: int) -> Batch:
    """The oldest entries (at most `limit`, and records of at most `max_bytes` of JSON unless
    the first alone is larger) as the records Akosha ingests.

    An upsert whose version is gone was purged with its memory: a later entry of the memory
    (the tombstone the purge or the delete queued) says so, and the upsert is settled unsent;
    with no later entry, it is sent as a tombstone itself, so Akosha never keeps what is gone."""
    async with db.session() as session:
        entries = list(await session.scalars(select(OutboxEntry).order_by(OutboxEntry.id).limit(limit)))
        if not entries:
            return Batch([], [])
        wanted = [(e.memory_id, e.version) for e in entries if e.op == "upsert"]
        versions = await _versions(session, wanted)
        vectors = await _vectors(session, wanted)
        gone = {e.memory_id for e in entries if e.op == "upsert" and (e.memory_id, e.version) not in versions}
        last = await _last_entries(session, gone)
    records: list[dict[str, Any]] = []
    settled: list[int] = []
    size = 0
    for entry in entries:
        item: dict[str, Any] | None
        if entry.op == "tombstone":
            item = _tombstone(source, entry, entry.version)
        elif (found := versions.get((entry.memory_id, entry.version))) is not None:
            vector = vectors.get((entry.memory_id, entry.version))
            item = _upsert(vault, source, entry, *found) | _embedding(vault, vector)
        elif last[entry.memory_id] > entry.id:
            item = None  # purged: the later entry tells Akosha
        else:
            item = _tombstone(source, entry, entry.version + 1)
        if item is not None:
            encoded = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
            if records and size + encoded > max_bytes:
                break
            size += encoded
            records.append(item)
        settled.append(entry.id)
    return Batch(records, settled)


async def settle(db: Database, entries: Sequence[int]) -> int:
    """Take `entries` off the queue (Akosha has them); answers how many were still there."""
    if not entries:
        return 0
    async with db.session() as session:
        result = await session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(list(entries))))
    return int(getattr(result, "rowcount", 0) or 0)


async def backlog(db: Database) -> Backlog:
    """How many entries wait, and since when the oldest."""
    async with db.session() as session:
        row = (await session.execute(select(func.count(), func.min(OutboxEntry.created_at)))).one()
    return Backlog(count=int(row[0] or 0), oldest_at=row[1])


async def _versions(
    session: AsyncSession, wanted: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], tuple[MemoryVersion, datetime]]:
    """The sealed versions still there, with their memory's creation time."""
    if not wanted:
        return {}
    rows = await session.execute(
        select(MemoryVersion, Memory.created_at)
        .join(Memory, Memory.id == MemoryVersion.memory_id)
        .where(tuple_(MemoryVersion.memory_id, MemoryVersion.version).in_(list(set(wanted))))
    )
    return {(v.memory_id, v.version): (v, created_at) for v, created_at in rows}


async def _vectors(
    session: AsyncSession, wanted: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], MemoryVector]:
    """The vectors made of the versions in `wanted` (a memory keeps one: its newest's)."""
    if not wanted:
        return {}
    versions = set(wanted)
    ids = {memory_id for memory_id, _ in wanted}
    rows = await session.scalars(select(MemoryVector).where(MemoryVector.memory_id.in_(ids)))
    found = {(row.memory_id, row.version): row for row in rows}
    return {key: row for key, row in found.items() if key in versions}


def _embedding(vault: Vault, row: MemoryVector | None) -> dict[str, Any]:
    if row is None:
        return {}
    vector = open_vector(vault, row).astype("<f4").tobytes()
    return {"embedding": {"model": row.model_id, "vector": base64.b64encode(vector).decode()}}


async def _last_entries(session: AsyncSession, memory_ids: Iterable[str]) -> dict[str, int]:
    """The newest queued entry of each memory."""
    ids = list(memory_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(OutboxEntry.memory_id, func.max(OutboxEntry.id))
        .where(OutboxEntry.memory_id.in_(ids))
        .group_by(OutboxEntry.memory_id)
    )
    return {memory_id: int(last) for memory_id, last in rows}


def _identity(source: str, entry: OutboxEntry, op: Op, version: int) -> dict[str, Any]:
    return {
        "source": source,
        "tenant": entry.tenant,
        "memory_id": entry.memory_id,
        "version": version,
        "op": op,
    }


def _upsert(
    vault: Vault, source: str, entry: OutboxEntry, version: MemoryVersion, created_at: datetime
) -> dict[str, Any]:
    document = vault.open(MEMORY_RECORD, version.tenant, version.memory_id, version.version, version.sealed)
    return {
        **_identity(source, entry, "upsert", version.version),
        "content": document["content"],
        "kind": document["kind"],
        "tags": document["tags"],
        "project": document["project"],
        "session_id": document["session_id"],
        "importance": document["importance"],
        "created_at": created_at.isoformat(),
        "updated_at": version.created_at.isoformat(),
    }


def _tombstone(source: str, entry: OutboxEntry, version: int) -> dict[str, Any]:
    return _identity(source, entry, "tombstone", version)
