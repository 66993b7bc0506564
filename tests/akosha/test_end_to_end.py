"""The real Session-Buddy pushing to the real Akosha: memories stored through Session-Buddy's
tools appear in Akosha (named by its source and tenant), an edit moves them to the new version,
a delete becomes a tombstone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.support.client import mcp_client
from tests.support.server import SECRET, RunningServer, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy

SOURCE = "ann-laptop"


@pytest.fixture
def akosha(tmp_path: Path) -> Iterator[Akosha]:
    folder = tmp_path / "akosha"
    folder.mkdir()
    running = start_akosha(folder, "sqlite")
    yield running
    stop_akosha(running)


@pytest.fixture
def session_buddy(tmp_path: Path, akosha: Akosha) -> Iterator[RunningServer]:
    folder = tmp_path / "session-buddy"
    folder.mkdir()
    env = session_buddy_env(
        folder,
        SESSION_BUDDY_AUTH_SECRET=SECRET,
        SESSION_ENCRYPTION_KEY=generate_key(),
        SESSION_BUDDY_AKOSHA_URL=akosha.server.base,
        AKOSHA_API_TOKEN=TOKEN,
        SESSION_BUDDY_SOURCE_NAME=SOURCE,
    )
    running = spawn_session_buddy(folder, env)
    wait_ready(running)
    yield running
    assert running.stop() == 0


def _writer() -> str:
    settings = SessionBuddySettings(auth_secret=SECRET)  # type: ignore[arg-type]
    return issue_token(settings, subject="ann", role="operator", ttl_seconds=600, tenant="acme")


async def _in_akosha(akosha: Akosha, memory_id: str, until: Any) -> dict[str, Any]:
    """The record once `until(record)` holds (Session-Buddy pushes in the background)."""
    record: dict[str, Any] = {}
    async with mcp_client(akosha.server.url, token("viewer", [SOURCE])) as client:
        for _ in range(1500):
            result = await client.call_tool("get_record", {"source": SOURCE, "memory_id": memory_id})
            if not result.is_error and result.structured_content is not None:
                record = result.structured_content
                if until(record):
                    return record
            await asyncio.sleep(0.02)
    raise AssertionError(f"Akosha never showed the expected record; last seen: {record}")


async def test_session_buddy_memories_reach_akosha(akosha: Akosha, session_buddy: RunningServer) -> None:
    async with mcp_client(session_buddy.url, _writer()) as client:
        kept = await client.call_tool(
            "store_memory",
            {"content": "retry the flaky upload twice", "kind": "fix", "tags": ["ci"], "project": "api"},
        )
        assert kept.structured_content is not None, kept
        kept_id = kept.structured_content["memory"]["id"]
        edited = await client.call_tool("store_memory", {"content": "first draft of the plan"})
        assert edited.structured_content is not None, edited
        edited_id = edited.structured_content["memory"]["id"]
        await client.call_tool("update_memory", {"memory_id": edited_id, "content": "the plan, revised"})
        gone = await client.call_tool("store_memory", {"content": "a secret to forget"})
        assert gone.structured_content is not None, gone
        gone_id = gone.structured_content["memory"]["id"]
        await client.call_tool("delete_memory", {"memory_id": gone_id})

    record = await _in_akosha(akosha, kept_id, lambda r: r["state"] == "live")
    assert (record["source"], record["tenant"], record["version"]) == (SOURCE, "acme", 1)
    document = record["document"]
    assert (document["content"], document["kind"], document["tags"], document["project"]) == (
        "retry the flaky upload twice",
        "fix",
        ["ci"],
        "api",
    )
    revised = await _in_akosha(akosha, edited_id, lambda r: r["version"] == 2)
    assert revised["document"]["content"] == "the plan, revised"
    tombstoned = await _in_akosha(akosha, gone_id, lambda r: r["state"] == "tombstoned")
    assert (tombstoned["version"], tombstoned["document"]) == (2, None)

    async with mcp_client(akosha.server.url, token("viewer", [SOURCE])) as client:
        sources = await client.call_tool("list_sources", {})
    assert sources.structured_content is not None
    assert sources.structured_content["sources"] == [
        {
            "source": SOURCE,
            "live": 2,
            "tombstoned": 1,
            "last_received_at": sources.structured_content["sources"][0]["last_received_at"],
        }
    ]

    async with mcp_client(akosha.server.url, token("viewer", [SOURCE])) as client:
        for _ in range(500):  # the index loads at start; the pushed versions are in it once stored
            found = await client.call_tool("search_all_systems", {"query": "flaky upload", "mode": "keyword"})
            if not found.is_error:
                break
            await asyncio.sleep(0.02)
    assert found.structured_content is not None, found
    hits = found.structured_content["hits"]
    assert [(h["source"], h["memory_id"], h["tenant"]) for h in hits] == [(SOURCE, kept_id, "acme")]
    async with mcp_client(akosha.server.url, token("viewer", [SOURCE])) as client:
        forgotten = await client.call_tool(
            "search_all_systems", {"query": "secret forget", "mode": "keyword"}
        )
    assert forgotten.structured_content is not None
    assert forgotten.structured_content["hits"] == []  # tombstoned at its source: gone from search
