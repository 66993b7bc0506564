"""The outbox to Akosha on SQLite and PostgreSQL: every new version and every deletion queues an
entry in its own transaction (ids only, never text), retention queues the deletions it makes,
and batches are read back in order as the records Akosha ingests."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete, select

from mahavishnu.platform import InvalidArgumentError, NotFoundError
from mahavishnu.platform.db import Database
from mahavishnu.platform.search.embeddings import HashingEmbedder
from mahavishnu.session_buddy import outbox
from mahavishnu.session_buddy.memories import Memories, NewMemory
from mahavishnu.session_buddy.models import Memory, OutboxEntry
from mahavishnu.session_buddy.retention import purge, set_policy
from mahavishnu.session_buddy.vault import Vault
from mahavishnu.session_buddy.vectors import pending, write_vectors

CANARY = "zebra-quokka-canary"
"""In everything a caller writes in one test; must be nowhere in the database."""


async def _entries(db: Database) -> list[tuple[str, str, int, str]]:
    async with db.session() as session:
        rows = await session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))
        return [(e.tenant, e.memory_id, e.version, e.op) for e in rows]


async def _batch(db: Database, vault: Vault, *, limit: int = 100, max_bytes: int = 1 << 20) -> outbox.Batch:
    return await outbox.next_batch(db, vault, source="here", limit=limit, max_bytes=max_bytes)


async def test_every_write_queues_its_entry_in_its_own_transaction(
    memories: Memories, other_tenant: Memories, sb_database: Database
) -> None:
    first = (await memories.store(NewMemory("deploys go through the canary stage"))).memory
    again = await memories.store(NewMemory("deploys go through the canary stage"))
    assert not again.created  # an idempotent repeat makes no version, so queues nothing
    await memories.update(first.id, {"tags": ["deploy"]})
    theirs = (await other_tenant.store(NewMemory("globex ships on Fridays"))).memory
    second = (await memories.store(NewMemory("the cache key includes the lockfile hash"))).memory
    with pytest.raises(InvalidArgumentError, match="already holds"):
        await memories.update(second.id, {"content": "deploys go through the canary stage"})
    await memories.delete(first.id)
    with pytest.raises(NotFoundError):
        await memories.delete(first.id)
    assert await _entries(sb_database) == [
        ("acme", first.id, 1, "upsert"),
        ("acme", first.id, 2, "upsert"),
        ("globex", theirs.id, 1, "upsert"),
        ("acme", second.id, 1, "upsert"),
        ("acme", first.id, 3, "tombstone"),  # the version after the last: it supersedes them
    ]


async def test_the_outbox_holds_ids_only_and_the_database_no_plaintext(
    memories: Memories, sb_database: Database
) -> None:
    """Stored, updated and deleted with no pusher running: the entries wait, naming no text."""
    stored = await memories.store(
        NewMemory(f"{CANARY} content", tags=[f"{CANARY}-tag"], project=f"{CANARY}-project", session_id="s-1")
    )
    await memories.update(stored.memory.id, {"content": f"{CANARY} content, second version"})
    kept = await memories.store(NewMemory(f"{CANARY} kept"))
    await memories.delete(stored.memory.id)
    async with sb_database.session() as session:
        rows = list(await session.scalars(select(OutboxEntry)))
    assert len(rows) == 4
    for row in rows:
        values = [getattr(row, column.key) for column in OutboxEntry.__table__.columns]
        assert not any(CANARY in str(value) for value in values)
        assert row.memory_id in {stored.memory.id, kept.memory.id}
    if sb_database.sqlite_path is not None:  # the file itself (and its write-ahead log)
        files = [
            sb_database.sqlite_path,
            sb_database.sqlite_path.with_name(sb_database.sqlite_path.name + "-wal"),
        ]
        assert any(path.stat().st_size for path in files if path.exists())
        for path in files:
            if path.exists():
                assert CANARY.encode() not in path.read_bytes(), path


async def test_retention_queues_a_tombstone_for_each_memory_it_purges_never_deleted(
    memories: Memories, other_tenant: Memories, sb_database: Database
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = (await memories.store(NewMemory("short-lived note", expires_at=soon))).memory
    await memories.update(expiring.id, {"tags": ["tmp"]})
    deleted = (await memories.store(NewMemory("regrettable note"))).memory
    await memories.delete(deleted.id)
    aged = (await other_tenant.store(NewMemory("globex's old fact"))).memory
    await set_policy(sb_database, "globex", 1)
    before = await _entries(sb_database)
    report = await purge(sb_database, purge_after_days=0, now=soon + timedelta(days=2))
    assert (report.expired, report.deleted, report.aged) == (1, 1, 1)
    queued = (await _entries(sb_database))[len(before) :]
    assert sorted(queued) == sorted(
        [("acme", expiring.id, 3, "tombstone"), ("globex", aged.id, 2, "tombstone")]
    )  # the deleted memory's tombstone was queued by its delete, once
    assert before.count(("acme", deleted.id, 2, "tombstone")) == 1


async def test_a_batch_is_the_entries_in_order_as_records(
    memories: Memories, other_tenant: Memories, sb_database: Database, vault: Vault
) -> None:
    first = (
        await memories.store(
            NewMemory("Use uv for installs", tags=["tooling"], project="mahavishnu", session_id="s-1")
        )
    ).memory
    updated = await memories.update(first.id, {"content": "Use uv for every install", "importance": 0.9})
    theirs = (await other_tenant.store(NewMemory("globex ships on Fridays", kind="fact"))).memory
    await memories.delete(first.id)
    batch = await _batch(sb_database, vault)
    assert len(batch.entries) == 4
    assert [(r["tenant"], r["memory_id"], r["version"], r["op"]) for r in batch.records] == [
        ("acme", first.id, 1, "upsert"),
        ("acme", first.id, 2, "upsert"),
        ("globex", theirs.id, 1, "upsert"),
        ("acme", first.id, 3, "tombstone"),
    ]
    assert batch.records[1] == {
        "source": "here",
        "tenant": "acme",
        "memory_id": first.id,
        "version": 2,
        "op": "upsert",
        "content": "Use uv for every install",
        "kind": "note",
        "tags": ["tooling"],
        "project": "mahavishnu",
        "session_id": "s-1",
        "importance": 0.9,
        "created_at": first.created_at.isoformat(),
        "updated_at": updated.updated_at.isoformat(),
    }
    assert batch.records[2]["kind"] == "fact"
    assert batch.records[3] == {
        "source": "here",
        "tenant": "acme",
        "memory_id": first.id,
        "version": 3,
        "op": "tombstone",
    }
    assert await outbox.settle(sb_database, batch.entries) == 4
    assert await _entries(sb_database) == []
    assert (await outbox.backlog(sb_database)).count == 0


async def test_a_batch_keeps_to_its_limits_and_resumes_where_it_stopped(
    memories: Memories, sb_database: Database, vault: Vault
) -> None:
    ids = [(await memories.store(NewMemory(f"note {i}: " + "x" * 900))).memory.id for i in range(5)]
    by_count = await _batch(sb_database, vault, limit=2)
    assert [r["memory_id"] for r in by_count.records] == ids[:2]
    by_bytes = await _batch(sb_database, vault, max_bytes=2500)
    assert [r["memory_id"] for r in by_bytes.records] == ids[:2]  # a third would pass 2500 bytes
    alone = await _batch(sb_database, vault, max_bytes=10)
    assert [r["memory_id"] for r in alone.records] == ids[:1]  # the first goes even when larger
    await outbox.settle(sb_database, by_count.entries)
    rest = await _batch(sb_database, vault)
    assert [r["memory_id"] for r in rest.records] == ids[2:]
    backlog = await outbox.backlog(sb_database)
    assert backlog.count == 3
    assert backlog.oldest_at is not None


async def test_upserts_of_a_purged_memory_go_unsent_before_its_tombstone(
    memories: Memories, sb_database: Database, vault: Vault
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    doomed = (await memories.store(NewMemory("short-lived note", expires_at=soon))).memory
    await memories.update(doomed.id, {"content": "short-lived note, edited"})
    await purge(sb_database, purge_after_days=30, now=soon + timedelta(seconds=1))
    batch = await _batch(sb_database, vault)
    assert len(batch.entries) == 3  # all settled by this batch
    assert batch.records == [
        {"source": "here", "tenant": "acme", "memory_id": doomed.id, "version": 3, "op": "tombstone"}
    ]


async def test_an_upsert_whose_memory_vanished_unannounced_is_sent_as_a_tombstone(
    memories: Memories, sb_database: Database, vault: Vault
) -> None:
    """A memory gone without a tombstone (purged by hand, say): Akosha must not keep it."""
    gone = (await memories.store(NewMemory("removed behind our back"))).memory
    kept = (await memories.store(NewMemory("still here"))).memory
    async with sb_database.session() as session:
        await session.execute(delete(Memory).where(Memory.id == gone.id))
    batch = await _batch(sb_database, vault)
    assert [(r["memory_id"], r["version"], r["op"]) for r in batch.records] == [
        (gone.id, 2, "tombstone"),
        (kept.id, 1, "upsert"),
    ]


async def test_a_concurrent_update_and_delete_never_share_a_version(
    memories: Memories, sb_database: Database
) -> None:
    """Whichever commits second sees the first: the tombstone is always after every upsert."""
    for round_ in range(8):
        memory = (await memories.store(NewMemory(f"contended note {round_}"))).memory
        outcomes = await asyncio.gather(
            memories.update(memory.id, {"content": f"contended note {round_}, edited"}),
            memories.delete(memory.id),
            return_exceptions=True,
        )
        assert not isinstance(outcomes[1], BaseException), outcomes[1]
        assert not isinstance(outcomes[0], BaseException) or isinstance(outcomes[0], NotFoundError)
        mine = [(v, op) for _, m, v, op in await _entries(sb_database) if m == memory.id]
        upserts = [v for v, op in mine if op == "upsert"]
        assert [op for _, op in mine][-1] == "tombstone"
        assert [v for v, op in mine if op == "tombstone"] == [max(upserts) + 1]
        assert len({v for v, _ in mine}) == len(mine)


async def test_upgrading_queues_what_was_written_before_the_outbox(
    memories: Memories, sb_database: Database
) -> None:
    first = (await memories.store(NewMemory("written before the outbox"))).memory
    await memories.update(first.id, {"tags": ["old"]})
    second = (await memories.store(NewMemory("also written before"))).memory
    await memories.delete(first.id)
    await sb_database.downgrade("session_buddy_0005")
    upgraded_at = datetime.now(UTC)
    await sb_database.upgrade()
    backlog = await outbox.backlog(sb_database)
    assert backlog.oldest_at is not None
    assert backlog.oldest_at >= upgraded_at  # when queued, not when written
    assert await _entries(sb_database) == [
        ("acme", first.id, 1, "upsert"),
        ("acme", first.id, 2, "upsert"),
        ("acme", second.id, 1, "upsert"),
        ("acme", first.id, 3, "tombstone"),
    ]


async def test_a_version_already_embedded_carries_its_vector(
    memories: Memories, sb_database: Database, vault: Vault
) -> None:
    """So Akosha, running the same model, need not embed it again; a version not yet embedded
    goes without one."""
    embedder = HashingEmbedder(32)
    first = (await memories.store(NewMemory("rotate the signing keys every quarter"))).memory
    waiting = await pending(sb_database, embedder.model_id, limit=10)
    made = embedder.embed(["rotate the signing keys every quarter"])[0]
    assert await write_vectors(sb_database, vault, embedder.model_id, [(waiting[0], made)])
    await memories.update(first.id, {"content": "rotate the signing keys every month"})

    records = (await _batch(sb_database, vault)).records
    assert [(r["version"], "embedding" in r) for r in records] == [(1, True), (2, False)]
    sent = records[0]["embedding"]
    assert sent["model"] == embedder.model_id
    assert np.array_equal(np.frombuffer(base64.b64decode(sent["vector"]), dtype="<f4"), made)
