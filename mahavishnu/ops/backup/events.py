"""The backup log, `backup_events`, as ops sees it: every service's backups are recorded there.

Why a model of its own: ops serves every service and imports none, so it cannot use
Mahavishnu's model of this table. Mahavishnu's migration 0002 still creates the table in its
databases (existing deployments keep their rows, and its migrations stay the owner there); a
service without that migration gets it from `ensure_events_table`, created only if absent, on
the first write. Reads of a database without the table find no events instead of failing
(readiness may look at a database that was never migrated).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, String, Text, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["BackupEvent", "ensure_events_table", "events_table_exists"]

TABLE = "backup_events"


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware in and out (SQLite stores naive values), as Mahavishnu's own models do."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class _OpsBase(DeclarativeBase):
    type_annotation_map = {datetime: _UTCDateTime()}


class BackupEvent(_OpsBase):
    """What happened to backups (create, verify, restore), so metrics and readiness can tell how
    old the last good backup is, whichever process made it. Same columns and indexes as
    Mahavishnu's migration 0002 creates."""

    __tablename__ = TABLE

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    archive: Mapped[str] = mapped_column(String(255))
    ok: Mapped[bool]
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)


async def events_table_exists(session: AsyncSession) -> bool:
    connection = await session.connection()
    return await connection.run_sync(lambda sync: inspect(sync).has_table(TABLE))


async def ensure_events_table(session: AsyncSession) -> None:
    """Create `backup_events` (and its indexes) unless the database has it already."""
    connection = await session.connection()
    await connection.run_sync(lambda sync: _OpsBase.metadata.create_all(sync, checkfirst=True))
