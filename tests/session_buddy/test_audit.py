"""The audit log on SQLite and PostgreSQL: every act appends an entry in its own transaction,
concurrent appends never fork the chain, and `verify` names the first edited, removed or
re-forged entry."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, update

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy import audit
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.models import AuditEntry
from mahavishnu.session_buddy.sessions import Sessions
from mahavishnu.session_buddy.vault import Vault


async def _act(memories: Memories, sessions: Sessions) -> str:
    stored = await memories.store(NewMemory("audited fact"))
    await memories.get(stored.memory.id)
    await memories.update(stored.memory.id, {"content": "audited fact, revised"})
    await memories.search_keyword("audited", Filters())
    await memories.delete(stored.memory.id)
    started = await sessions.start("api")
    await sessions.end(started.session.id, "bye")
    return stored.memory.id


async def test_every_act_is_an_entry_naming_who_and_what(
    memories: Memories, sessions: Sessions, sb_database: Database, vault: Vault
) -> None:
    memory_id = await _act(memories, sessions)
    entries = (await audit.page(sb_database, "acme", limit=50, cursor=None)).entries
    assert [e.action for e in reversed(entries)] == [
        "memory.store",
        "memory.read",
        "memory.update",
        "memory.search",
        "memory.delete",
        "session.start",
        "session.end",
    ]
    assert {e.actor for e in entries} == {"ann"}
    assert entries[-1].target == memory_id
    assert "audited" not in str([e.model_dump() for e in entries])  # ids and counts, never content
    assert (await audit.verify(sb_database, vault)).intact


async def test_concurrent_appends_keep_one_chain(
    memories: Memories, sb_database: Database, vault: Vault
) -> None:
    await asyncio.gather(*(memories.store(NewMemory(f"parallel {i}")) for i in range(12)))
    result = await audit.verify(sb_database, vault)
    assert (result.intact, result.entries) == (True, 12)


async def test_an_edited_entry_is_found(
    memories: Memories, sessions: Sessions, sb_database: Database, vault: Vault
) -> None:
    await _act(memories, sessions)
    async with sb_database.session() as session:
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
    result = await audit.verify(sb_database, vault)
    assert (result.intact, result.first_broken_seq) == (False, 3)


async def test_a_removed_entry_is_found_in_the_middle_and_at_the_end(
    memories: Memories, sessions: Sessions, sb_database: Database, vault: Vault
) -> None:
    await _act(memories, sessions)
    async with sb_database.session() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 7))
    result = await audit.verify(sb_database, vault)
    assert (result.intact, result.reason) == (False, "the chain ends before its head: entries were removed")
    async with sb_database.session() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    result = await audit.verify(sb_database, vault)
    assert (result.intact, result.first_broken_seq) == (False, 2)


async def test_a_chain_forged_without_the_key_does_not_verify(
    memories: Memories, sessions: Sessions, sb_database: Database, vault: Vault
) -> None:
    await _act(memories, sessions)
    forger = Vault(KeyRing.parse(generate_key()), bytes(32))  # anyone without the index key
    assert not (await audit.verify(sb_database, forger)).intact
