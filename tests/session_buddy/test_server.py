"""Session-Buddy served for real (`mahavishnu serve session-buddy`), used through the official
MCP client over HTTP: every memory tool, tenants that never meet, roles, clean errors, and
nothing of a memory readable in the files it keeps."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.support.client import call_tool, mcp_client
from tests.support.server import SECRET, RunningServer, free_port, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy

TOOLS = {
    "start_session",
    "checkpoint",
    "end_session",
    "get_session",
    "list_sessions",
    "store_memory",
    "get_memory",
    "update_memory",
    "delete_memory",
    "get_memory_history",
    "list_memories",
    "search_memories",
    "memory_stats",
}
CANARY = "canary-violet-5d1e"


def _env(data: Path, **extra: str) -> dict[str, str]:
    settings = {
        "SESSION_BUDDY_AUTH_SECRET": SECRET,
        "SESSION_ENCRYPTION_KEY": generate_key(),
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_BURST": "100000",
    }
    return session_buddy_env(data, **{**settings, **extra})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("session-buddy")
    running = spawn_session_buddy(data, _env(data))
    wait_ready(running)
    yield running
    assert running.stop() == 0


def token(subject: str, role: str = "operator", tenant: str | None = None) -> str:
    settings = SessionBuddySettings(auth_secret=SECRET)
    return issue_token(settings, subject=subject, role=role, ttl_seconds=600, tenant=tenant)  # type: ignore[arg-type]


def ok(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_every_memory_tool_over_http(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", tenant="acme-http")) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) >= TOOLS
        assert all(listed[name].output_schema for name in TOOLS)
        stored = ok(
            await client.call_tool(
                "store_memory",
                {"content": "CI fails with E4012 in tests/api/test_login.py", "kind": "fix", "tags": ["ci"]},
            )
        )
        memory_id = stored["memory"]["id"]
        assert stored["created"] is True
        again = ok(
            await client.call_tool(
                "store_memory", {"content": "CI fails with E4012 in tests/api/test_login.py"}
            )
        )
        assert (again["created"], again["memory"]["id"]) == (False, memory_id)
        hits = ok(await client.call_tool("search_memories", {"query": "E4012"}))
        assert [h["memory"]["id"] for h in hits["hits"]] == [memory_id]
        updated = ok(
            await client.call_tool("update_memory", {"memory_id": memory_id, "content": "fixed: pin httpx"})
        )
        assert updated["version"] == 2
        history = ok(await client.call_tool("get_memory_history", {"memory_id": memory_id}))
        assert [v["version"] for v in history["versions"]] == [1, 2]
        assert (
            ok(await client.call_tool("get_memory", {"memory_id": memory_id}))["content"]
            == "fixed: pin httpx"
        )
        page = ok(await client.call_tool("list_memories", {"tags": ["ci"], "kinds": ["fix"]}))
        assert page["total"] == 1
        assert ok(await client.call_tool("memory_stats", {}))["by_kind"] == {"fix": 1}
        ok(await client.call_tool("delete_memory", {"memory_id": memory_id}))
        gone = await client.call_tool("get_memory", {"memory_id": memory_id})
        assert gone.is_error


async def _embedded_hits(client: Any, arguments: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Search by meaning until `count` memories are found: the workers embed in the background
    (and the index answers only once the model is loaded)."""
    async with asyncio.timeout(60):
        while True:
            result = await client.call_tool("search_memories", arguments)
            hits: list[dict[str, Any]] = (result.structured_content or {}).get("hits", [])
            if not result.is_error and len(hits) >= count:
                return hits
            await asyncio.sleep(0.2)


async def test_search_by_meaning_with_the_real_model_over_http(server: RunningServer) -> None:
    """The packaged model embeds in the background: a question sharing no word with its answer is
    found by meaning (not by keyword), and an error code is found first in hybrid mode."""
    async with mcp_client(server.url, token("ann", tenant="meaning-http")) as client:
        contents = [
            "The nightly billing export runs at 02:30 UTC because the warehouse locks tables earlier.",
            "User prefers tabs over spaces in shell scripts.",
            "Redis listens on port 6379 in the compose stack.",
            "Login test fails with E7781 in tests/api/test_login.py when the clock skews.",
        ]
        ids = [ok(await client.call_tool("store_memory", {"content": c}))["memory"]["id"] for c in contents]
        question = {"query": "overnight invoicing job schedule?", "limit": 3}
        assert ok(await client.call_tool("search_memories", {**question, "mode": "keyword"}))["hits"] == []
        found = await _embedded_hits(client, {**question, "mode": "semantic", "limit": 10}, 4)
        assert found[0]["memory"]["id"] == ids[0]
        hybrid = ok(await client.call_tool("search_memories", question))
        assert hybrid["hits"][0]["memory"]["id"] == ids[0]
        coded = ok(await client.call_tool("search_memories", {"query": "E7781", "mode": "hybrid"}))
        assert coded["hits"][0]["memory"]["id"] == ids[3]


async def test_a_session_hands_off_to_the_next_over_http(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", tenant="sessions-http")) as client:
        first = ok(await client.call_tool("start_session", {"project": "api", "goal": "add SSO"}))
        session_id = first["session"]["id"]
        assert first["previous_handoff"] is None
        mark = ok(
            await client.call_tool(
                "checkpoint", {"session_id": session_id, "summary": "half way", "state": {"step": 2}}
            )
        )
        assert mark["number"] == 1
        ended = ok(
            await client.call_tool("end_session", {"session_id": session_id, "summary": "wire the callback"})
        )
        assert ended["status"] == "ended"
        detail = ok(await client.call_tool("get_session", {"session_id": session_id}))
        assert detail["recent_checkpoints"][0]["state"] == {"step": 2}
        second = ok(await client.call_tool("start_session", {"project": "api"}))
        assert second["previous_handoff"]["summary"] == "wire the callback"
        listed = ok(await client.call_tool("list_sessions", {"project": "api", "status": "active"}))
        assert [s["id"] for s in listed["sessions"]] == [second["session"]["id"]]


async def test_two_tenants_see_nothing_of_each_other(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", tenant="acme-t")) as acme:
        mine = ok(
            await acme.call_tool("store_memory", {"content": "acme roadmap: ship SSO", "tags": ["plan"]})
        )
    memory_id = mine["memory"]["id"]
    for other in (token("ann", tenant="globex-t"), token("ann")):  # the same subject, another tenant
        async with mcp_client(server.url, other) as globex:
            for tool, arguments in [
                ("get_memory", {"memory_id": memory_id}),
                ("get_memory_history", {"memory_id": memory_id}),
                ("update_memory", {"memory_id": memory_id, "content": "hijacked"}),
                ("delete_memory", {"memory_id": memory_id}),
            ]:
                assert (await globex.call_tool(tool, arguments)).is_error, tool
            assert ok(await globex.call_tool("search_memories", {"query": "roadmap"}))["total"] == 0
            assert ok(await globex.call_tool("list_memories", {"tags": ["plan"]}))["total"] == 0
            assert ok(await globex.call_tool("memory_stats", {}))["total"] == 0
    async with mcp_client(server.url, token("ann", tenant="acme-t")) as acme:
        assert (
            ok(await acme.call_tool("get_memory", {"memory_id": memory_id}))["content"]
            == "acme roadmap: ship SSO"
        )


async def test_a_viewer_reads_but_does_not_write(server: RunningServer) -> None:
    async with mcp_client(server.url, token("vic", role="viewer", tenant="viewers")) as client:
        with pytest.raises(MCPError, match="needs the operator role"):
            await client.call_tool("store_memory", {"content": "not allowed"})
        assert ok(await client.call_tool("memory_stats", {}))["total"] == 0


@pytest.mark.parametrize(
    "arguments",
    [
        {"content": ""},
        {"content": "x" * 16_001},
        {"content": "x", "kind": "gossip"},
        {"content": "x", "tags": ["t"] * 300},
        {"content": "x", "importance": 7},
        {"content": "x", "expires_at": "not a time"},
        {"content": {"nested": [[[["deep"]]]]}},
        {"content": "x", "tags": ["bad\u0000tag"]},
    ],
)
def test_bad_input_is_a_clean_tool_error(server: RunningServer, arguments: dict[str, Any]) -> None:
    """Out of range: a tool error naming the argument; wrongly typed: JSON-RPC -32602 (as every
    tool of every service answers)."""
    answer = call_tool(server.url, "store_memory", arguments, token=token("bad", tenant="bad-input"))
    assert answer.status_code == 200
    body = answer.json()
    if "error" in body:
        assert body["error"]["code"] == -32602
    else:
        assert body["result"]["isError"] is True
    assert "Traceback" not in answer.text
    stats = call_tool(server.url, "memory_stats", {}, token=token("bad", tenant="bad-input"))
    assert stats.json()["result"]["structuredContent"]["total"] == 0


def test_nothing_of_a_memory_is_readable_in_the_data_folder(server: RunningServer) -> None:
    answer = call_tool(
        server.url,
        "store_memory",
        {"content": f"the deploy password hint is {CANARY}", "tags": [CANARY], "project": CANARY},
        token=token("ann", tenant="canary"),
    )
    assert answer.json()["result"]["isError"] is False
    data = Path(server.env["SESSION_BUDDY_DATA_DIR"])
    files = [p for p in data.rglob("*") if p.is_file() and not p.name.endswith(".log")]
    assert any(p.name.startswith("session-buddy.db") for p in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path


def test_production_refuses_to_start_without_an_encryption_key(tmp_path: Path) -> None:
    env = _env(tmp_path, SESSION_BUDDY_ENV="production")
    del env["SESSION_ENCRYPTION_KEY"]
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "serve", "session-buddy", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SESSION_ENCRYPTION_KEY" in done.stderr
    assert not list(tmp_path.glob("*.db"))


def test_development_makes_its_key_once_and_warns(tmp_path: Path) -> None:
    env = _env(tmp_path)
    del env["SESSION_ENCRYPTION_KEY"]
    for _ in range(2):
        running = spawn_session_buddy(tmp_path, env)
        wait_ready(running)
        assert running.stop() == 0
        assert "development_encryption_key" in running.log_path.read_text()
    key_file = tmp_path / "session-buddy.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_a_restart_with_a_new_key_first_rotates_and_the_old_key_can_go(tmp_path: Path) -> None:
    """The operator's rotation: new key first, restart, watch `rotate_encryption_key` reach 0
    remaining, drop the old key, restart: everything reads."""
    old, new = generate_key(), generate_key()
    env = _env(tmp_path, SESSION_ENCRYPTION_KEY=old)
    admin = token("root", role="admin", tenant="rotating")
    running = spawn_session_buddy(tmp_path, env)
    wait_ready(running)
    stored = []
    async with mcp_client(running.url, admin) as client:
        for i in range(5):
            stored.append(
                ok(await client.call_tool("store_memory", {"content": f"kept through rotation {i}"}))
            )
    assert running.stop() == 0

    for keys in (f"{new},{old}", new):
        running = spawn_session_buddy(tmp_path, {**env, "SESSION_ENCRYPTION_KEY": keys})
        wait_ready(running)
        async with mcp_client(running.url, admin) as client:
            status = ok(await client.call_tool("rotate_encryption_key", {}))
            for _ in range(100):
                if not status["running"] and status["remaining"] == 0:
                    break
                await asyncio.sleep(0.1)
                status = ok(await client.call_tool("rotate_encryption_key", {}))
            assert (status["remaining"], status["unreadable"]) == (0, [])
            for memory in stored:
                read = ok(await client.call_tool("get_memory", {"memory_id": memory["memory"]["id"]}))
                assert read["content"] == memory["memory"]["content"]
            found = ok(await client.call_tool("search_memories", {"query": "rotation"}))
            assert found["total"] == 5
        assert running.stop() == 0


def test_rotation_is_for_admins(server: RunningServer) -> None:
    answer = call_tool(server.url, "rotate_encryption_key", {}, token=token("op", role="operator"))
    assert "admin role" in answer.text


async def test_retention_tools_for_admins(server: RunningServer) -> None:
    async with mcp_client(server.url, token("root", role="admin", tenant="retained")) as client:
        policy = ok(await client.call_tool("set_retention_policy", {"max_age_days": 90}))
        assert policy == {"tenant": "retained", "max_age_days": 90}
        report = ok(await client.call_tool("run_retention", {}))
        assert set(report) == {"expired", "deleted", "aged"}
    answer = call_tool(server.url, "run_retention", {}, token=token("op", role="operator"))
    assert "admin role" in answer.text


async def test_the_audit_log_over_http(server: RunningServer) -> None:
    async with mcp_client(server.url, token("root", role="admin", tenant="audited")) as client:
        stored = ok(await client.call_tool("store_memory", {"content": "an audited memory"}))
        ok(await client.call_tool("get_memory", {"memory_id": stored["memory"]["id"]}))
        log = ok(await client.call_tool("get_audit_log", {"limit": 10}))
        assert [e["action"] for e in log["entries"]] == ["memory.read", "memory.store"]
        assert ok(await client.call_tool("verify_audit_log", {}))["intact"] is True


async def test_metrics_count_stores_searches_and_embeddings(server: RunningServer) -> None:
    stored = 'session_buddy_memories_stored_total{outcome="created"}'
    repeated = 'session_buddy_memories_stored_total{outcome="existing"}'
    searched = 'session_buddy_searches_total{mode="keyword"}'
    timed = 'session_buddy_search_duration_seconds_count{mode="keyword"}'
    before = {s: server.metric(s) or 0.0 for s in (stored, repeated, searched, timed)}
    async with mcp_client(server.url, token("ann", tenant="metered")) as client:
        ok(await client.call_tool("store_memory", {"content": "metered memory about gRPC deadlines"}))
        ok(await client.call_tool("store_memory", {"content": "metered memory about gRPC deadlines"}))
        ok(await client.call_tool("search_memories", {"query": "deadlines", "mode": "keyword"}))
        await _embedded_hits(client, {"query": "gRPC deadlines", "mode": "semantic"}, 1)
    after = {s: server.metric(s) or 0.0 for s in before}
    assert {s: after[s] - before[s] for s in before} == {stored: 1, repeated: 1, searched: 1, timed: 1}
    assert (server.metric("session_buddy_memories_embedded_total") or 0) >= 1
    assert (server.metric('session_buddy_embedding_duration_seconds_count{what="batch"}') or 0) >= 1
    assert server.metric("session_buddy_embedding_queue_depth") == 0
    assert server.metric("session_buddy_rotation_remaining") == 0


async def test_sessions_and_the_audit_log_stay_in_their_tenant(server: RunningServer) -> None:
    async with mcp_client(server.url, token("ann", role="admin", tenant="acme-s")) as acme:
        started = ok(await acme.call_tool("start_session", {"project": "billing", "goal": "acme secret"}))
        ok(await acme.call_tool("end_session", {"session_id": started["session"]["id"], "summary": "x"}))
    session_id = started["session"]["id"]
    async with mcp_client(server.url, token("ann", role="admin", tenant="globex-s")) as globex:
        for tool, arguments in [
            ("get_session", {"session_id": session_id}),
            ("checkpoint", {"session_id": session_id, "summary": "hijack"}),
            ("end_session", {"session_id": session_id}),
        ]:
            assert (await globex.call_tool(tool, arguments)).is_error, tool
        assert ok(await globex.call_tool("list_sessions", {}))["total"] == 0
        fresh = ok(await globex.call_tool("start_session", {"project": "billing"}))
        assert fresh["previous_handoff"] is None  # acme's hand-off is not globex's
        log = ok(await globex.call_tool("get_audit_log", {"limit": 50}))
        assert log["entries"], "globex's own acts are audited"
        assert all(e.get("target") != session_id for e in log["entries"])
        assert "session.end" not in {e["action"] for e in log["entries"]}  # acme's, not globex's
