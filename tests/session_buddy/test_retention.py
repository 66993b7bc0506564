"""Retention on SQLite and PostgreSQL: expired, long-deleted and too-old memories are purged
with every row that named them (versions, words, labels); everything else stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.memories import Memories, NewMemory
from mahavishnu.session_buddy.models import Memory, MemoryLabel, MemoryTerm, MemoryVersion
from mahavishnu.session_buddy.retention import purge, set_policy

TRACES = (Memory, MemoryVersion, MemoryTerm, MemoryLabel)


async def _traces(db: Database, memory_id: str) -> dict[str, int]:
    counts = {}
    async with db.session() as session:
        for table in TRACES:
            key = table.id if table is Memory else table.memory_id
            counts[table.__tablename__] = int(
                await session.scalar(select(func.count()).where(key == memory_id)) or 0
            )
    return counts


async def test_an_expired_memory_leaves_no_trace(memories: Memories, sb_database: Database) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    doomed = await memories.store(NewMemory("short-lived note", tags=["tmp"], project="p", expires_at=soon))
    kept = await memories.store(NewMemory("kept note", tags=["tmp"]))
    assert all(await _traces(sb_database, doomed.memory.id))
    report = await purge(sb_database, purge_after_days=30, now=soon + timedelta(seconds=1))
    assert (report.expired, report.deleted, report.aged) == (1, 0, 0)
    assert set((await _traces(sb_database, doomed.memory.id)).values()) == {0}
    assert (await memories.get(kept.memory.id)).content == "kept note"


async def test_a_deleted_memory_is_purged_after_the_window(memories: Memories, sb_database: Database) -> None:
    stored = await memories.store(NewMemory("regrettable note"))
    await memories.delete(stored.memory.id)
    early = await purge(sb_database, purge_after_days=30, now=datetime.now(UTC) + timedelta(days=29))
    assert early.deleted == 0
    assert (await _traces(sb_database, stored.memory.id))["session_buddy_memory_versions"] == 1
    late = await purge(sb_database, purge_after_days=30, now=datetime.now(UTC) + timedelta(days=31))
    assert late.deleted == 1
    assert set((await _traces(sb_database, stored.memory.id)).values()) == {0}


async def test_a_tenant_policy_purges_only_that_tenants_old_memories(
    memories: Memories, other_tenant: Memories, sb_database: Database
) -> None:
    mine = await memories.store(NewMemory("acme's old fact"))
    theirs = await other_tenant.store(NewMemory("globex's old fact"))
    assert await set_policy(sb_database, "acme", 7) == 7
    assert await set_policy(sb_database, "acme", 10) == 10  # replaced, not added
    report = await purge(sb_database, purge_after_days=30, now=datetime.now(UTC) + timedelta(days=11))
    assert report.aged == 1
    assert (await _traces(sb_database, mine.memory.id))["session_buddy_memories"] == 0
    assert (await other_tenant.get(theirs.memory.id)).content == "globex's old fact"
    assert await set_policy(sb_database, "acme", None) is None


@pytest.mark.parametrize("days", [0, -1, 36_501])
async def test_a_policy_out_of_range_is_refused(sb_database: Database, days: int) -> None:
    with pytest.raises(InvalidArgumentError, match="max_age_days"):
        await set_policy(sb_database, "acme", days)
