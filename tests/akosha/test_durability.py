"""`kill -9` while batches are being ingested: after a restart, every record Akosha acknowledged
is there (SQLite and PostgreSQL), and the search index, rebuilt from the store, finds each one;
answers are given only after the commit."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.akosha.records import batch, upsert
from tests.support.akosha import spawn_akosha
from tests.support.client import mcp_client
from tests.support.server import wait_ready

SENDERS = 4
PER_BATCH = 25
ACKED_BEFORE_KILL = 24


async def _send(akosha: Akosha, sender: int, acked: dict[str, int], enough: asyncio.Event) -> None:
    """Batches of new memories, each upserted twice (version 1, then 2 in the next batch),
    until the server dies; what a 200 acknowledged goes into `acked`."""
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        number = 0
        while True:
            ids = [f"s{sender}-b{number}-{i}" for i in range(PER_BATCH)]
            records = [upsert(m, 1) for m in ids]
            if number:
                records += [upsert(f"s{sender}-b{number - 1}-{i}", 2) for i in range(PER_BATCH)]
            try:
                answer = await client.post(akosha.ingest_url, json=batch(*records))
            except httpx.HTTPError:
                return  # the server is gone
            assert answer.status_code == 200, answer.text
            for record in records:
                acked[record["memory_id"]] = max(acked.get(record["memory_id"], 0), record["version"])
            number += 1
            if number * SENDERS >= ACKED_BEFORE_KILL:
                enough.set()


async def _versions(akosha: Akosha) -> dict[str, int]:
    found: dict[str, int] = {}
    async with mcp_client(akosha.server.url, token("admin")) as client:
        cursor = None
        while True:
            arguments = {"source": "box", "limit": 200, **({"cursor": cursor} if cursor else {})}
            result = await client.call_tool("list_records", arguments)
            page = result.structured_content
            assert page is not None, result
            found.update({r["memory_id"]: r["version"] for r in page["records"]})
            cursor = page["next_cursor"]
            if cursor is None:
                return found


async def _indexed(akosha: Akosha) -> int:
    """How many records a keyword search finds (every record's content says "version"), once
    the index has been rebuilt."""
    async with mcp_client(akosha.server.url, token("admin")) as client:
        for _ in range(600):
            result = await client.call_tool("search_all_systems", {"query": "version", "mode": "keyword"})
            if not result.is_error and result.structured_content is not None:
                return int(result.structured_content["total"])
            await asyncio.sleep(0.05)
    raise AssertionError(f"the index was never ready: {result}")


async def _ingest_until_killed(akosha: Akosha) -> dict[str, int]:
    """Senders at work; once enough was acknowledged, SIGKILL while their batches are in flight."""
    acked: dict[str, int] = {}
    enough = asyncio.Event()
    senders = [asyncio.create_task(_send(akosha, n, acked, enough)) for n in range(SENDERS)]
    try:
        await asyncio.wait_for(enough.wait(), timeout=120)
        akosha.server.process.send_signal(signal.SIGKILL)
        await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()
    return acked


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_no_acknowledged_record_is_lost(tmp_path: Path, database: str) -> None:
    first = start_akosha(tmp_path, database)
    try:
        acked = asyncio.run(_ingest_until_killed(first))
    finally:
        first.server.stop(signal.SIGKILL)
    assert len(acked) >= ACKED_BEFORE_KILL * PER_BATCH // SENDERS
    again = Akosha(spawn_akosha(tmp_path, first.server.env), tmp_path, first.schema)
    try:
        wait_ready(again.server)
        found = asyncio.run(_versions(again))
        indexed = asyncio.run(_indexed(again))
    finally:
        stop_akosha(again)
    missing = {m: v for m, v in acked.items() if found.get(m, 0) < v}
    assert missing == {}, f"{len(missing)} acknowledged records lost or older"
    assert indexed == len(found), "the rebuilt index holds every stored record"
