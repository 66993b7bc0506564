"""Key rotation: re-seal every stored value under the ring's current key, in the background,
resumably, while reads and writes go on.

To rotate, put a new key first in SESSION_ENCRYPTION_KEY and keep the old ones after it, then
restart (or call `rotate_encryption_key`). The sweep visits only values whose first bytes name
another key (`KeyRing.current_prefix`, compared in SQL), re-wraps each one's data key (the
payload is not touched, so the cost does not depend on the value's size) and writes it back
only if it is unchanged (compare-and-set: a concurrent update that re-sealed the value wins).
A stopped sweep resumes where it was, since what is done no longer matches. Once it reports
nothing remaining, the old keys can be dropped from the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Table,
    and_,
    bindparam,
    column,
    func,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from mahavishnu.platform import Database, get_logger
from mahavishnu.platform.crypto import DecryptionError, KeyRing
from mahavishnu.session_buddy.models import (
    Base,
    Checkpoint,
    CodingSession,
    Memory,
    MemoryVector,
    MemoryVersion,
)
from mahavishnu.session_buddy.vault import reseal_index_key

__all__ = ["BATCH", "SEALED", "Rotation", "remaining"]

log = get_logger("session_buddy.rotation")

BATCH = 500
"""Values re-sealed per transaction: short transactions, so writers never wait long."""

SEALED: tuple[tuple[type[Base], tuple[InstrumentedAttribute[object], ...]], ...] = (
    (Memory, (Memory.id,)),
    (MemoryVersion, (MemoryVersion.memory_id, MemoryVersion.version)),
    (MemoryVector, (MemoryVector.memory_id,)),
    (CodingSession, (CodingSession.id,)),
    (Checkpoint, (Checkpoint.session_id, Checkpoint.number)),
)
"""Every table with a sealed value, with its primary key."""


async def _compare_and_set(
    session: AsyncSession,
    dialect: str,
    table: type[Base],
    key: tuple[InstrumentedAttribute[object], ...],
    changes: list[dict[str, object]],
) -> int:
    """Set each change's `new` value where the row still holds its `old` one, in one statement;
    answers how many rows were written. PostgreSQL: UPDATE … FROM (VALUES …) RETURNING (its
    driver reports no row count for an executemany); SQLite: an executemany, whose row count
    it reports (its VALUES cannot be named as UPDATE … FROM needs)."""
    if not changes:
        return 0
    stored = cast("Table", table.__table__)
    columns = stored.c
    names = [f"k{n}" for n in range(len(key))]
    if dialect == "postgresql":
        given = values(
            *(column(name, stored.c[k.key].type) for name, k in zip(names, key, strict=True)),
            column("old", LargeBinary),
            column("new", LargeBinary),
            name="changes",
        ).data([(*(c[name] for name in names), c["old"], c["new"]) for c in changes])
        match = [columns[k.key] == given.c[name] for name, k in zip(names, key, strict=True)]
        statement = (
            update(stored)
            .where(and_(*match, columns.sealed == given.c.old))
            .values(sealed=given.c.new)
            .returning(columns[key[0].key])
        )
        return len((await session.execute(statement)).all())
    match = [columns[k.key] == bindparam(name) for name, k in zip(names, key, strict=True)]
    many = (
        update(stored).where(and_(*match, columns.sealed == bindparam("old"))).values(sealed=bindparam("new"))
    )
    result = await session.execute(many, changes)
    return int(getattr(result, "rowcount", 0))


def _stale(table: type[Base], ring: KeyRing) -> ColumnElement[bool]:
    prefix = ring.current_prefix
    sealed: InstrumentedAttribute[bytes] = getattr(table, "sealed")  # noqa: B009 - typed access
    return func.substr(sealed, 1, len(prefix)) != prefix


async def remaining(db: Database, ring: KeyRing) -> int:
    """Values still sealed under another key than the current one."""
    total = 0
    async with db.session() as session:
        for table, _ in SEALED:
            total += int(
                await session.scalar(select(func.count()).select_from(table).where(_stale(table, ring))) or 0
            )
    return total


@dataclass
class Rotation:
    """One sweep's progress, as `rotate_encryption_key` reports it."""

    ring: KeyRing
    rotated: int = 0
    skipped: int = 0
    """Values changed by a writer between our read and our write (already re-sealed by it)."""
    done: bool = False
    errors: list[str] = field(default_factory=list)
    on_progress: Callable[[int], None] | None = None
    """Told how many values each batch re-sealed (the metrics follow the sweep with it)."""

    async def run(self, db: Database) -> None:
        await reseal_index_key(db, self.ring)
        for table, key in SEALED:
            after: tuple[object, ...] | None = None
            while (after := await self._batch(db, table, key, after)) is not None:
                pass
        self.done = True
        log.info(
            "rotation_done",
            key_id=self.ring.current_key_id,
            rotated=self.rotated,
            skipped=self.skipped,
            unreadable=len(self.errors),
        )

    async def _batch(
        self,
        db: Database,
        table: type[Base],
        key: tuple[InstrumentedAttribute[object], ...],
        after: tuple[object, ...] | None,
    ) -> tuple[object, ...] | None:
        """Re-seal the next BATCH stale values of `table` in key order after `after`; answers
        the last key visited, None once the table is done. Keyset order, not "what is still
        stale": a value no key of the ring opens stays stale, and must not be visited forever."""
        sealed: InstrumentedAttribute[bytes] = getattr(table, "sealed")  # noqa: B009 - typed access
        query = select(*key, sealed).where(_stale(table, self.ring)).order_by(*key).limit(BATCH)
        if after is not None:
            query = query.where(tuple_(*key) > tuple_(*after))
        async with db.session() as session:
            rows = (await session.execute(query)).all()
            changes = []
            for row in rows:
                *ids, old = row
                try:
                    new = self.ring.rotate(old)
                except DecryptionError as exc:
                    self.errors.append(f"{table.__tablename__} {ids}: {exc.reason}")
                    continue
                changes.append({**{f"k{n}": v for n, v in enumerate(ids)}, "old": old, "new": new})
            written = await _compare_and_set(session, db.engine.dialect.name, table, key, changes)
        self.rotated += written
        self.skipped += len(changes) - written
        if self.on_progress is not None and written:
            self.on_progress(written)
        return tuple(rows[-1][: len(key)]) if len(rows) == BATCH else None
