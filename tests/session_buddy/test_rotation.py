"""Key rotation on SQLite and PostgreSQL: after the sweep every memory, version, session and
checkpoint opens with the new key alone, search still finds them (tokens never change), and
writes during the sweep lose nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy import rotation
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.models import Memory
from mahavishnu.session_buddy.rotation import Rotation, _compare_and_set, remaining
from mahavishnu.session_buddy.sessions import SessionLimits, Sessions
from mahavishnu.session_buddy.vault import open_vault
from tests.session_buddy.conftest import LIMITS


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "BATCH", 3)


async def _fill(db: Database, ring: KeyRing, count: int) -> list[str]:
    vault = await open_vault(db, ring)
    memories = Memories(db, vault, LIMITS, tenant="acme", author="ann")
    ids = []
    for i in range(count):
        stored = await memories.store(NewMemory(f"fact number {i} about widgets", tags=["w"]))
        await memories.update(stored.memory.id, {"content": f"fact number {i} about gadgets"})
        ids.append(stored.memory.id)
    sessions = Sessions(db, vault, SessionLimits(max_text_chars=500), tenant="acme", author="ann")
    started = await sessions.start("api", goal="rotate")
    await sessions.checkpoint(started.session.id, "half", {"k": 1})
    await sessions.end(started.session.id, "hand-off")
    return ids


async def test_after_the_sweep_the_old_key_is_not_needed(sb_database: Database) -> None:
    old, new = generate_key(), generate_key()
    ids = await _fill(sb_database, KeyRing.parse(old), 7)
    during = KeyRing.parse(f"{new},{old}")
    assert await remaining(sb_database, during) == 7 + 14 + 1 + 1
    sweep = Rotation(during)
    await sweep.run(sb_database)
    assert (sweep.done, sweep.rotated, sweep.errors) == (True, 23, [])
    assert await remaining(sb_database, during) == 0

    alone = KeyRing.parse(new)
    vault = await open_vault(sb_database, alone)  # the index key was re-sealed too
    memories = Memories(sb_database, vault, LIMITS, tenant="acme", author="ann")
    for memory_id in ids:
        history = await memories.history(memory_id)
        assert [v.version for v in history.versions] == [1, 2]
    assert (await memories.search_keyword("gadgets", Filters(tags=["w"]))).total == 7
    sessions = Sessions(sb_database, vault, SessionLimits(max_text_chars=500), tenant="acme", author="ann")
    listed = await sessions.listing(project="api", active=False)
    detail = await sessions.get(listed.sessions[0].id)
    assert detail.recent_checkpoints[0].state == {"k": 1}


async def test_writes_during_the_sweep_lose_nothing(sb_database: Database) -> None:
    old, new = generate_key(), generate_key()
    ids = await _fill(sb_database, KeyRing.parse(old), 9)
    during = KeyRing.parse(f"{new},{old}")
    memories = Memories(
        sb_database, await open_vault(sb_database, during), LIMITS, tenant="acme", author="ann"
    )

    async def writer() -> None:
        for i, memory_id in enumerate(ids):
            await memories.update(memory_id, {"content": f"rewritten {i} during the sweep"})

    await asyncio.gather(Rotation(during).run(sb_database), writer())
    assert await remaining(sb_database, during) == 0
    alone = Memories(
        sb_database, await open_vault(sb_database, KeyRing.parse(new)), LIMITS, tenant="acme", author="x"
    )
    for i, memory_id in enumerate(ids):
        assert (await alone.get(memory_id)).content == f"rewritten {i} during the sweep"


async def test_a_value_no_key_opens_is_reported_not_looped_on(sb_database: Database) -> None:
    lost, new = generate_key(), generate_key()
    await _fill(sb_database, KeyRing.parse(lost), 4)
    ring = KeyRing.parse(new)  # the old key is gone: nothing can be re-sealed
    sweep = Rotation(ring)
    with pytest.raises(Exception, match="not in the key ring"):
        await sweep.run(sb_database)  # the index key itself cannot be opened: said, not looped


async def test_a_batch_writes_only_values_nobody_changed_meanwhile(
    sb_database: Database, memories: Memories
) -> None:
    """The sweep's one statement per batch is a compare-and-set: a value a writer re-sealed
    between the sweep's read and its write is left as the writer made it, and not counted."""
    first = (await memories.store(NewMemory("first"))).memory.id
    second = (await memories.store(NewMemory("second"))).memory.id
    async with sb_database.session() as session:
        sealed = dict((await session.execute(select(Memory.id, Memory.sealed))).all())
        changes = [
            {"k0": first, "old": sealed[first], "new": b"re-sealed"},
            {"k0": second, "old": b"what the sweep read before a writer came", "new": b"stale"},
        ]
        written = await _compare_and_set(
            session, sb_database.engine.dialect.name, Memory, (Memory.id,), changes
        )
    assert written == 1
    async with sb_database.session() as session:
        after = dict((await session.execute(select(Memory.id, Memory.sealed))).all())
    assert after == {first: b"re-sealed", second: sealed[second]}
