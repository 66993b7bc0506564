"""The memory store on SQLite and PostgreSQL: idempotent writes, versions, deletes, filters,
keyword ranking over blind tokens, and tenants that never meet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mahavishnu.platform import InvalidArgumentError, NotFoundError
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.models import Memory, MemoryLabel, MemoryTerm, MemoryVersion


async def test_a_stored_memory_reads_back_whole(memories: Memories) -> None:
    stored = await memories.store(
        NewMemory("Use uv for installs", kind="decision", tags=["tooling", "python"], project="api")
    )
    assert stored.created
    got = await memories.get(stored.memory.id)
    assert (got.content, got.kind, got.tags, got.project, got.version) == (
        "Use uv for installs",
        "decision",
        ["python", "tooling"],
        "api",
        1,
    )


async def test_a_retry_with_the_same_key_answers_the_first_result(memories: Memories) -> None:
    first = await memories.store(NewMemory("first text"), idempotency_key="k-1")
    again = await memories.store(NewMemory("other text entirely"), idempotency_key="k-1")
    assert not again.created
    assert again.memory.id == first.memory.id
    assert again.memory.content == "first text"
    assert (await memories.stats()).total == 1


async def test_the_same_content_twice_is_one_memory_and_deletes_nothing(memories: Memories) -> None:
    first = await memories.store(NewMemory("pin numpy below 2"))
    second = await memories.store(NewMemory("  pin numpy below 2  "))
    assert not second.created
    assert second.memory.id == first.memory.id
    assert (await memories.get(first.memory.id)).content == "pin numpy below 2"


async def test_concurrent_stores_of_one_key_make_one_memory(memories: Memories) -> None:
    results = await asyncio.gather(
        *(memories.store(NewMemory(f"text {i}"), idempotency_key="same") for i in range(8))
    )
    assert len({r.memory.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert (await memories.stats()).total == 1


async def test_an_update_supersedes_and_keeps_the_history(memories: Memories) -> None:
    stored = await memories.store(NewMemory("the API listens on 8080", kind="fact"))
    updated = await memories.update(stored.memory.id, {"content": "the API listens on 8443", "tags": ["tls"]})
    assert (updated.version, updated.content, updated.tags) == (2, "the API listens on 8443", ["tls"])
    history = await memories.history(stored.memory.id)
    assert [v.content for v in history.versions] == ["the API listens on 8080", "the API listens on 8443"]
    assert [v.author for v in history.versions] == ["ann", "ann"]
    assert (await memories.search_keyword("8443", Filters())).total == 1
    assert (await memories.search_keyword("8080", Filters())).total == 0


async def test_an_update_to_another_memorys_content_is_refused(memories: Memories) -> None:
    one = await memories.store(NewMemory("alpha"))
    await memories.store(NewMemory("beta"))
    with pytest.raises(InvalidArgumentError, match="already holds this content"):
        await memories.update(one.memory.id, {"content": "beta"})


async def test_a_deleted_memory_is_gone_from_every_read_and_index(
    memories: Memories, sb_database: Database
) -> None:
    stored = await memories.store(NewMemory("rotate the staging certificate", tags=["ops"]))
    await memories.delete(stored.memory.id)
    with pytest.raises(NotFoundError):
        await memories.get(stored.memory.id)
    assert (await memories.search_keyword("certificate", Filters())).total == 0
    assert (await memories.listing(Filters(tags=["ops"]))).total == 0
    async with sb_database.session() as session:
        for table in (MemoryTerm, MemoryLabel):
            assert (
                await session.scalars(select(table).where(table.memory_id == stored.memory.id))
            ).all() == []
    assert (await memories.stats()).deleted_awaiting_purge == 1
    again = await memories.store(NewMemory("rotate the staging certificate"))
    assert again.created
    assert again.memory.id != stored.memory.id


async def test_an_expired_memory_is_not_seen(memories: Memories) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    stored = await memories.store(NewMemory("temporary note", expires_at=past))
    with pytest.raises(NotFoundError):
        await memories.get(stored.memory.id)
    assert (await memories.listing(Filters())).total == 0


async def test_listing_filters_and_pages_newest_first(memories: Memories) -> None:
    ids = []
    for i in range(5):
        kind = "fix" if i % 2 else "fact"
        ids.append(
            (await memories.store(NewMemory(f"memory {i}", kind=kind, tags=["t"], project="p"))).memory.id
        )
    page = await memories.listing(Filters(kinds=["fact"], project="p"), limit=2)
    assert (page.total, [m.id for m in page.memories]) == (3, [ids[4], ids[2]])
    rest = await memories.listing(Filters(kinds=["fact"], project="p"), limit=2, cursor=page.next_cursor)
    assert ([m.id for m in rest.memories], rest.next_cursor) == ([ids[0]], None)
    with pytest.raises(InvalidArgumentError, match="other filters"):
        await memories.listing(Filters(kinds=["fix"]), limit=2, cursor=page.next_cursor)


async def test_keyword_search_ranks_identifiers_and_words(memories: Memories) -> None:
    target = await memories.store(NewMemory("tests/unit/test_auth.py::test_expiry fails with E1234 on CI"))
    await memories.store(NewMemory("the auth service caches tokens for an hour"))
    await memories.store(NewMemory("deploys go out on Tuesdays"))
    for query in ("E1234", "test_expiry", "tests/unit/test_auth.py", "e1234 ci"):
        page = await memories.search_keyword(query, Filters())
        assert page.hits[0].memory.id == target.memory.id, query
    both = await memories.search_keyword("auth", Filters())
    assert both.total == 2
    assert (await memories.search_keyword("nothing-like-this", Filters())).total == 0


async def test_search_pages_do_not_repeat(memories: Memories) -> None:
    for i in range(7):
        await memories.store(NewMemory(f"flaky test number {i} " + "flaky " * i))
    seen: list[str] = []
    cursor = None
    while True:
        page = await memories.search_keyword("flaky", Filters(), limit=3, cursor=cursor)
        seen += [h.memory.id for h in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


async def test_tenants_never_meet(memories: Memories, other_tenant: Memories) -> None:
    mine = await memories.store(NewMemory("acme secret plan", tags=["plan"]), idempotency_key="k")
    theirs = await other_tenant.store(NewMemory("acme secret plan", tags=["plan"]), idempotency_key="k")
    assert theirs.created
    assert theirs.memory.id != mine.memory.id
    with pytest.raises(NotFoundError):
        await other_tenant.get(mine.memory.id)
    with pytest.raises(NotFoundError):
        await other_tenant.update(mine.memory.id, {"content": "hijacked"})
    with pytest.raises(NotFoundError):
        await other_tenant.delete(mine.memory.id)
    assert [h.memory.id for h in (await other_tenant.search_keyword("secret", Filters())).hits] == [
        theirs.memory.id
    ]
    assert (await other_tenant.listing(Filters(tags=["plan"]))).total == 1
    assert (await memories.get(mine.memory.id)).content == "acme secret plan"


async def test_a_sealed_row_moved_to_another_tenant_does_not_open(
    memories: Memories, other_tenant: Memories, sb_database: Database
) -> None:
    stored = await memories.store(NewMemory("bound to acme"))
    async with sb_database.session() as session:
        row = await session.get(Memory, stored.memory.id)
        assert row is not None
        row.tenant = "globex"
    with pytest.raises(Exception, match=r"(?i)decrypt|authentic"):
        await other_tenant.get(stored.memory.id)


async def test_nothing_readable_is_stored(memories: Memories, sb_database: Database) -> None:
    canary = "canary-7f3a9c-violet"
    await memories.store(NewMemory(f"remember {canary}", tags=[canary], project=canary))
    async with sb_database.session() as session:
        for table in (Memory, MemoryVersion, MemoryTerm, MemoryLabel):
            for row in (await session.scalars(select(table))).all():
                for value in vars(row).values():
                    if isinstance(value, bytes | str):
                        raw = value if isinstance(value, bytes) else value.encode()
                        assert canary.encode() not in raw, table.__tablename__


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (NewMemory(""), "content"),
        (NewMemory("x" * 2001), "content"),
        (NewMemory("x", kind="gossip"), "kind"),
        (NewMemory("x", importance=2.0), "importance"),
        (NewMemory("x", tags=[f"t{i}" for i in range(9)]), "tags"),
        (NewMemory("x", tags=["bad\ntag"]), "tags"),
        (NewMemory("x", expires_at=datetime(2030, 1, 1)), "expires_at"),
    ],
)
async def test_bad_input_names_the_field(memories: Memories, new: NewMemory, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        await memories.store(new)
