"""The real Session-Buddy (`mahavishnu serve session-buddy`) with SESSION_BUDDY_AKOSHA_URL set
pushes what its tools write to a recording stand-in for Akosha, with AKOSHA_API_TOKEN, and its
/metrics show the backlog drained."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.support.akosha_receiver import AkoshaReceiver
from tests.support.client import mcp_client
from tests.support.server import SECRET, RunningServer, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy

TOKEN = "akosha-ingest-token-for-the-server-test"


@pytest.fixture
def receiver() -> Iterator[AkoshaReceiver]:
    server = AkoshaReceiver(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path, receiver: AkoshaReceiver) -> Iterator[RunningServer]:
    env = session_buddy_env(
        tmp_path,
        SESSION_BUDDY_AUTH_SECRET=SECRET,
        SESSION_ENCRYPTION_KEY=generate_key(),
        SESSION_BUDDY_AKOSHA_URL=receiver.url,
        AKOSHA_API_TOKEN=TOKEN,
        SESSION_BUDDY_SOURCE_NAME="it-box",
    )
    running = spawn_session_buddy(tmp_path, env)
    wait_ready(running)
    yield running
    assert running.stop() == 0


async def test_what_the_tools_write_reaches_akosha(server: RunningServer, receiver: AkoshaReceiver) -> None:
    token = issue_token(
        SessionBuddySettings(auth_secret=SECRET),  # type: ignore[arg-type]
        subject="ann",
        role="operator",
        ttl_seconds=600,
        tenant="acme",
    )
    async with mcp_client(server.url, token) as client:
        stored = await client.call_tool("store_memory", {"content": "pushed from the real server"})
        assert stored.structured_content is not None
        memory_id = stored.structured_content["memory"]["id"]
        await client.call_tool("update_memory", {"memory_id": memory_id, "content": "pushed, then edited"})
        await client.call_tool("delete_memory", {"memory_id": memory_id})
    for _ in range(3000):
        if len(receiver.records) == 3 and server.metric("session_buddy_outbox_lag") == 0:
            break
        await asyncio.sleep(0.02)
    assert [(r["tenant"], r["version"], r["op"]) for r in receiver.arrivals()] == [
        ("acme", 1, "upsert"),
        ("acme", 2, "upsert"),
        ("acme", 3, "tombstone"),
    ]
    assert {key[:2] for key in receiver.records} == {("it-box", memory_id)}
    assert receiver.records[("it-box", memory_id, 2)]["content"] == "pushed, then edited"
    assert server.metric("session_buddy_outbox_pushed_total") == 3
