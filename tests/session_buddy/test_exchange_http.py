"""export_memories and import_memories served for real (`mahavishnu serve session-buddy`), used
through the official MCP client over HTTP: an export of one tenant imports into another whole
(embeddings of the real model included, searchable at once), a second import changes nothing,
an edited file is refused, and a viewer exports but does not import."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.platform.search.embeddings import DEFAULT_MODEL, MODELS
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.support.client import mcp_client
from tests.support.server import SECRET, RunningServer, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy

MODEL = MODELS[DEFAULT_MODEL].model_id  # the model the server runs by default
CONTENTS = [
    "The nightly billing export runs at 02:30 UTC because the warehouse locks tables earlier.",
    "Redis listens on port 6379 in the compose stack.",
    "Login test fails with E7781 in tests/api/test_login.py when the clock skews.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("session-buddy-exchange")
    env = session_buddy_env(
        data,
        SESSION_BUDDY_AUTH_SECRET=SECRET,
        SESSION_ENCRYPTION_KEY=generate_key(),
        RATE_LIMIT_PER_MINUTE="100000",
        RATE_LIMIT_BURST="100000",
    )
    running = spawn_session_buddy(data, env)
    wait_ready(running)
    yield running
    assert running.stop() == 0


def token(subject: str, tenant: str, role: str = "operator") -> str:
    settings = SessionBuddySettings(auth_secret=SECRET)
    return issue_token(settings, subject=subject, role=role, ttl_seconds=600, tenant=tenant)  # type: ignore[arg-type]


def ok(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    found: dict[str, Any] | None = result.structured_content
    assert found is not None
    return found


async def export(client: Client, limit: int = 2) -> list[str]:
    """Every page, in order, as export_memories tells a model to join them."""
    lines: list[str] = []
    arguments: dict[str, Any] = {"limit": limit}
    while True:
        page = ok(await client.call_tool("export_memories", arguments))
        lines += page["lines"]
        if page["next_cursor"] is None:
            return lines
        arguments["cursor"] = page["next_cursor"]


async def embedded(client: Client, count: int) -> None:
    """Wait for the background workers to embed `count` memories (and the model to load)."""
    async with asyncio.timeout(60):
        while True:
            result = await client.call_tool("search_memories", {"query": "schedule", "mode": "semantic"})
            if not result.is_error and len((result.structured_content or {})["hits"]) >= count:
                return
            await asyncio.sleep(0.2)


def comparable(lines: list[str]) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in lines[:-1]]
    found = [{k: v for k, v in r.items() if k not in ("id", "checksum")} for r in records]
    return sorted(found, key=lambda r: str(r["versions"][0]["content"]))


async def test_the_tools_are_listed_with_their_schemas(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", "listing-x")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, read_only in (("export_memories", True), ("import_memories", False)):
        annotations = tools[name].annotations
        assert tools[name].output_schema
        assert annotations is not None
        assert annotations.read_only_hint is read_only


async def test_an_export_imports_into_another_tenant_whole(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", "exchange-a")) as source:
        ids = [ok(await source.call_tool("store_memory", {"content": c}))["memory"]["id"] for c in CONTENTS]
        ok(await source.call_tool("update_memory", {"memory_id": ids[1], "content": "Redis listens on 6380"}))
        ok(await source.call_tool("update_memory", {"memory_id": ids[1], "tags": ["redis", "ports"]}))
        await embedded(source, len(CONTENTS))
        lines = await export(source)
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 3
    assert {r["embedding"]["model_id"] for r in records} == {MODEL}
    redis = next(r for r in records if r["id"] == ids[1])
    assert [v["content"] for v in redis["versions"]] == [
        CONTENTS[1],
        "Redis listens on 6380",
        "Redis listens on 6380",
    ]
    assert {v["author"] for v in redis["versions"]} == {"ann"}

    async with mcp_client(server.url, token("bob", "exchange-b")) as target:
        report = ok(await target.call_tool("import_memories", {"jsonl": "\n".join(lines) + "\n"}))
        assert (report["created"], report["vectors"], report["skipped"]) == (3, 3, 0)
        # searchable by meaning at once: the exported vectors were stored, nothing waits for a worker
        hits = ok(
            await target.call_tool(
                "search_memories", {"query": "overnight invoicing job", "mode": "semantic"}
            )
        )
        assert hits["hits"][0]["memory"]["content"] == CONTENTS[0]
        again = await export(target, limit=50)
        assert comparable(again) == comparable(lines)
        second = ok(await target.call_tool("import_memories", {"jsonl": "\n".join(lines)}))
        assert (second["created"], second["skipped"]) == (0, 3)
        assert ok(await target.call_tool("memory_stats", {}))["total"] == 3
        ok(await target.call_tool("store_memory", {"content": "only exchange-b knows this"}))
    async with mcp_client(server.url, token("ann", "exchange-a")) as source:
        assert "only exchange-b" not in "".join(await export(source))


async def test_an_edited_export_is_refused_and_nothing_is_written(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", "edited-a")) as source:
        ok(await source.call_tool("store_memory", {"content": "the staging database is pg-14"}))
        lines = await export(source)
    record = json.loads(lines[0])
    record["versions"][0]["content"] = "the staging database is pg-9"
    edited = [json.dumps(record), *lines[1:]]
    async with mcp_client(server.url, token("bob", "edited-b")) as target:
        refused = await target.call_tool("import_memories", {"jsonl": "\n".join(edited)})
        assert refused.is_error
        assert refused.content[0].text == "line 1: the checksum does not match the record: it was edited"  # type: ignore[union-attr]
        cut = await target.call_tool("import_memories", {"jsonl": "\n".join(lines[:-1])})
        assert cut.is_error
        assert "without its trailer" in cut.content[0].text  # type: ignore[union-attr]
        assert ok(await target.call_tool("memory_stats", {}))["total"] == 0


async def test_a_viewer_exports_but_does_not_import(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", "viewed")) as owner:
        ok(await owner.call_tool("store_memory", {"content": "viewers may read this"}))
        lines = await export(owner)
    async with mcp_client(server.url, token("vic", "viewed", role="viewer")) as viewer:
        assert await export(viewer) != []
        with pytest.raises(MCPError, match="needs the operator role"):
            await viewer.call_tool("import_memories", {"jsonl": "\n".join(lines)})
