"""The backup log, `backup_events`, as ops sees it: every service's backups are recorded there.

Why a model of its own: ops serve every service and import none. The table is ops': ops' own
migration tree (`mahavishnu/ops/migrations`, version table `alembic_version_ops`, see
`mahavishnu.ops.schema`) creates it in any service's database, or adopts it where Mahavishnu's
revision 0002 made it before ops had a tree. Reads of a database without the table find no
events instead of failing (readiness may look at a database that was never migrated).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mahavishnu.platform.sqltypes import UTCDateTime

__all__ = ["BackupEvent", "OpsBase", "events_table_exists"]

TABLE = "backup_events"


class OpsBase(DeclarativeBase):
    """The metadata of ops' tables (their migration tree compares against it)."""

    type_annotation_map = {datetime: UTCDateTime()}


class BackupEvent(OpsBase):
    """What happened to backups (create, verify, restore), so metrics and readiness can tell how
    old the last good backup is, whichever process made it. Created by ops' revision ops_0001
    (the same columns and indexes as Mahavishnu's 0002, which it adopts)."""

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
