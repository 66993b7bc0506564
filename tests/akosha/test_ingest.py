"""Ingest into the store (SQLite and PostgreSQL): each memory keeps its newest version, whatever
the order batches arrive in and however often; tombstones delete and stay deleted."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import select, update

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.ingest import ROWS_PER_STATEMENT
from mahavishnu.akosha.models import Record
from mahavishnu.akosha.reads import Reader
from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.crypto import DecryptionError
from mahavishnu.platform.db import Database
from tests.akosha.records import parsed, tombstone, upsert

ADMIN = Principal(subject="root", role="admin")

Row = tuple[str, str, int, str, str | None]


async def store(reader: Reader, source: str | None = None) -> dict[str, Row]:
    """Every record of `source` (all sources: None): memory id → tenant, state, version, content."""
    found: dict[str, Row] = {}
    cursor = None
    while True:
        page = await reader.records(
            ADMIN, source=source, tenant=None, include_tombstoned=True, limit=200, cursor=cursor
        )
        for r in page.records:
            content = r.document.content if r.document is not None else None
            found[r.memory_id] = (r.source if source is None else "", r.tenant, r.version, r.state, content)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def take(inbox: Inbox, *records: dict[str, Any], source: str = "box") -> tuple[int, int]:
    result = await inbox.take(source, parsed(*records, source=source))
    return result.accepted, result.unchanged


async def test_a_replayed_batch_changes_nothing(inbox: Inbox, reader: Reader) -> None:
    records = [upsert("m1", 1), upsert("m2", 1), tombstone("m3", 2)]
    assert await take(inbox, *records) == (3, 0)
    before = await store(reader)
    assert await take(inbox, *records) == (0, 3)
    assert await store(reader) == before
    assert before["m1"] == ("box", "acme", 1, "live", "m1 at version 1")
    assert before["m3"] == ("box", "acme", 2, "tombstoned", None)


async def test_every_order_of_every_batch_leaves_the_same_store(inbox: Inbox, reader: Reader) -> None:
    """A memory's history, in batches of one record: delivered in order, reversed, shuffled,
    and with repeats, each into a source of its own; every source ends the same."""
    history = [
        upsert("a", 1),
        upsert("a", 2),
        upsert("b", 1),
        tombstone("b", 2),
        upsert("c", 1),
        upsert("c", 2, content="c edited"),
        upsert("c", 3, content="c edited twice"),
        tombstone("d", 1),  # deleted before Akosha ever heard of it (a purge)
        upsert("e", 5),
    ]
    shuffler = random.Random(1234)
    orders = [history, history[::-1]]
    for _ in range(6):
        order = history + shuffler.sample(history, 4)
        shuffler.shuffle(order)
        orders.append(order)
    for index, order in enumerate(orders):
        source = f"order-{index}"
        for record in order:
            await take(inbox, {**record, "source": source}, source=source)
    stores = [await store(reader, f"order-{index}") for index in range(len(orders))]
    assert all(s == stores[0] for s in stores[1:])
    assert {key: row[2:] for key, row in stores[0].items()} == {
        "a": (2, "live", "a at version 2"),
        "b": (2, "tombstoned", None),
        "c": (3, "live", "c edited twice"),
        "d": (1, "tombstoned", None),
        "e": (5, "live", "e at version 5"),
    }


async def test_an_older_version_after_a_newer_one_changes_nothing(inbox: Inbox, reader: Reader) -> None:
    assert await take(inbox, upsert("m", 3, content="newest")) == (1, 0)
    assert await take(inbox, upsert("m", 2, content="older")) == (0, 1)
    assert await take(inbox, upsert("m", 1, content="oldest")) == (0, 1)
    assert (await store(reader))["m"][2:] == (3, "live", "newest")


async def test_a_tombstone_deletes_and_no_older_upsert_brings_it_back(inbox: Inbox, reader: Reader) -> None:
    await take(inbox, upsert("m", 1), upsert("other", 1))
    assert await take(inbox, tombstone("m", 2)) == (1, 0)
    assert (await store(reader))["m"][2:] == (2, "tombstoned", None)
    assert await take(inbox, upsert("m", 1)) == (0, 1)
    assert await take(inbox, upsert("m", 2, content="same version as the tombstone")) == (0, 1)
    assert (await store(reader))["m"][2:] == (2, "tombstoned", None)
    assert (await store(reader))["other"][3] == "live"
    page = await reader.records(
        ADMIN, source="box", tenant=None, include_tombstoned=False, limit=10, cursor=None
    )
    assert [r.memory_id for r in page.records] == ["other"]


@pytest.mark.parametrize("first", ["upsert", "tombstone"])
async def test_at_one_version_the_tombstone_wins_in_either_order(
    inbox: Inbox, reader: Reader, first: str
) -> None:
    pair = [upsert("m", 4), tombstone("m", 4)]
    for record in pair if first == "upsert" else pair[::-1]:
        await take(inbox, record)
    assert (await store(reader))["m"][2:] == (4, "tombstoned", None)


async def test_an_upsert_after_the_tombstone_version_is_a_new_life(inbox: Inbox, reader: Reader) -> None:
    await take(inbox, upsert("m", 1), tombstone("m", 2))
    assert await take(inbox, upsert("m", 3, content="restored")) == (1, 0)
    assert (await store(reader))["m"][2:] == (3, "live", "restored")


async def test_one_batch_with_several_versions_of_a_memory_keeps_the_newest(
    inbox: Inbox, reader: Reader
) -> None:
    assert await take(inbox, upsert("m", 1), upsert("m", 3, content="third"), upsert("m", 2)) == (1, 2)
    assert (await store(reader))["m"][2:] == (3, "live", "third")


async def test_tenant_source_and_document_are_kept(inbox: Inbox, reader: Reader) -> None:
    record = upsert(
        "m",
        7,
        source="laptop-ann",
        tenant="team:blue",
        content="the fix was a retry",
        kind="fix",
        tags=["ci", "flaky"],
        project="payments",
        session_id="s-42",
        importance=0.9,
    )
    await take(inbox, record, source="laptop-ann")
    view = await reader.record(ADMIN, "laptop-ann", "m")
    assert (view.source, view.tenant, view.memory_id, view.version, view.state) == (
        "laptop-ann",
        "team:blue",
        "m",
        7,
        "live",
    )
    assert view.document is not None
    assert view.document.model_dump(mode="json") == {
        "content": "the fix was a retry",
        "kind": "fix",
        "tags": ["ci", "flaky"],
        "project": "payments",
        "session_id": "s-42",
        "importance": 0.9,
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-01-02T03:04:07Z",
    }


async def test_concurrent_batches_for_one_memory_end_at_its_newest_version(
    inbox: Inbox, reader: Reader
) -> None:
    versions = list(range(1, 31))
    random.Random(7).shuffle(versions)
    results = await asyncio.gather(*(take(inbox, upsert("m", v)) for v in versions))
    assert (await store(reader))["m"][2:] == (30, "live", "m at version 30")
    assert sum(accepted for accepted, _ in results) >= 1
    assert all(accepted + unchanged == 1 for accepted, unchanged in results)


async def test_a_batch_larger_than_one_statement(inbox: Inbox, reader: Reader) -> None:
    count = ROWS_PER_STATEMENT * 2 + 7
    assert await take(inbox, *(upsert(f"m{i:05d}", 1) for i in range(count))) == (count, 0)
    assert len(await store(reader)) == count


async def test_a_bad_batch_stores_nothing(inbox: Inbox, reader: Reader) -> None:
    with pytest.raises(InvalidArgumentError, match=r"records\[1\]\.source: must be the batch's source"):
        await inbox.take("box", parsed(upsert("m", 1), upsert("n", 1, source="other"), source="box"))
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        await inbox.take("box", [])
    assert await store(reader) == {}


async def test_a_sealed_document_opens_only_in_its_own_row(
    inbox: Inbox, reader: Reader, ak_database: Database
) -> None:
    """The document is bound to source, tenant, memory and version: copied into another row
    (or the row's tenant changed), it does not open."""
    await take(inbox, upsert("m", 1, content="secret one"), upsert("n", 1, content="secret two"))
    async with ak_database.session() as session:
        sealed = await session.scalar(select(Record.sealed).where(Record.memory_id == "m"))
        await session.execute(update(Record).where(Record.memory_id == "n").values(sealed=sealed))
    with pytest.raises(DecryptionError):
        await reader.record(ADMIN, "box", "n")
    async with ak_database.session() as session:
        await session.execute(update(Record).where(Record.memory_id == "m").values(tenant="globex"))
    with pytest.raises(DecryptionError):
        await reader.record(ADMIN, "box", "m")
