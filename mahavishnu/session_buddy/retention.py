"""Retention: what is purged for good, and when.

- a memory whose `expires_at` has passed;
- a deleted memory, once `purge_after_days` have passed since the delete (the window lets an
  operator answer "what did this say" during an audit; nothing can read it otherwise);
- under a tenant's policy, a memory not updated for `max_age_days`.

A purge deletes the memory row; its versions, words and labels go with it (foreign keys with
ON DELETE CASCADE, on SQLite too: the platform turns them on), so nothing is left that names
it but the audit log's record of the purge, and, for a memory never deleted, the tombstone it
queues for Akosha in the same transaction (a deleted memory's was queued by its delete).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, InvalidArgumentError
from mahavishnu.session_buddy import outbox
from mahavishnu.session_buddy.models import Memory, RetentionPolicy

__all__ = ["RetentionReport", "purge", "set_policy"]

MAX_AGE_DAYS = 36_500


class RetentionReport(BaseModel):
    expired: int = Field(description="Memories purged because their expires_at passed.")
    deleted: int = Field(description="Deleted memories purged after the purge window.")
    aged: int = Field(description="Memories purged under their tenant's max_age_days.")


async def purge(db: Database, *, purge_after_days: int, now: datetime | None = None) -> RetentionReport:
    """Purge everything retention says is due, in every tenant."""
    moment = now or datetime.now(UTC)
    async with db.session() as session:
        policies = list(await session.scalars(select(RetentionPolicy)))
        expired = await _delete(session, and_(Memory.expires_at.is_not(None), Memory.expires_at <= moment))
        deleted = await _delete(
            session,
            and_(
                Memory.deleted_at.is_not(None), Memory.deleted_at <= moment - timedelta(days=purge_after_days)
            ),
        )
        aged = 0
        for policy in policies:
            cutoff = moment - timedelta(days=policy.max_age_days)
            aged += await _delete(session, and_(Memory.tenant == policy.tenant, Memory.updated_at <= cutoff))
    return RetentionReport(expired=expired, deleted=deleted, aged=aged)


async def _delete(session: AsyncSession, condition: ColumnElement[bool]) -> int:
    """Purge the memories meeting `condition`; a tombstone for each one never deleted. The rows
    the delete answers are the ones it removed, at the version they had then."""
    result = await session.execute(
        delete(Memory).where(condition).returning(Memory.id, Memory.tenant, Memory.version, Memory.deleted_at)
    )
    purged = result.all()
    now = datetime.now(UTC)
    for memory_id, tenant, version, deleted_at in purged:
        if deleted_at is None:
            outbox.record_tombstone(session, tenant=tenant, memory_id=memory_id, last_version=version, at=now)
    return len(purged)


async def set_policy(db: Database, tenant: str, max_age_days: int | None) -> int | None:
    """Set (or with None, remove) a tenant's max age; answers the policy now in force."""
    if max_age_days is not None and not 1 <= max_age_days <= MAX_AGE_DAYS:
        raise InvalidArgumentError(f"max_age_days: between 1 and {MAX_AGE_DAYS}, or null for none")
    async with db.session() as session:
        if max_age_days is None:
            await session.execute(delete(RetentionPolicy).where(RetentionPolicy.tenant == tenant))
            return None
        insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
        values = {"tenant": tenant, "max_age_days": max_age_days, "updated_at": datetime.now(UTC)}
        statement = insert(RetentionPolicy).values(**values)
        await session.execute(
            statement.on_conflict_do_update(index_elements=[RetentionPolicy.tenant], set_=values)
        )
    return max_age_days
