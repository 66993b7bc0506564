"""Agent runs become Session-Buddy sessions: the pusher writes each queued run of the `agent`
workflow (`tests/workflows/test_agent_session_outbox.py`) to a real Session-Buddy server over
MCP as one session with two memories. While Session-Buddy is down nothing is lost and it is
written once it is back; a replayed delivery adds no memory; two pushers on one database (two
replicas) write each run once; a refused token is an error, and the token is in no log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr, ValidationError
from sqlalchemy import insert, select, update

from mahavishnu.orchestrator.agent_session_pusher import TEXT_CHARS, AgentSessionPusher, SessionMetrics
from mahavishnu.orchestrator.mcp_peer import McpPeer
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows import agent_session_outbox
from mahavishnu.orchestrator.workflows.models import AgentSessionEntry
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.ecosystem.buddy import buddy_token, memories_of, sessions_of, start_buddy
from tests.support.server import RunningServer, free_port
from tests.workflows.conftest import Harness, harness
from tests.workflows.test_agent_session_outbox import ENDINGS, PROMPT

TOKEN_SETTING = "MAHAVISHNU_SESSION_BUDDY_TOKEN"


async def _run_agent(h: Harness) -> str:
    """The agent over the fleet, and a git-status workflow beside it (no agent: no session)."""
    summary = await h.service.trigger(ADMIN, "agent", params={"prompt": PROMPT})
    assert (await h.wait(summary.workflow_id)).status == "partial"
    await h.wait((await h.service.trigger(ADMIN, "git-status")).workflow_id)
    return summary.workflow_id


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'workflows.db'}")
    await db.ensure_schema(upgrade=True)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
def buddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One Session-Buddy for the module; each test writes as a tenant of its own."""
    server = start_buddy(tmp_path_factory.mktemp("buddy"))
    yield server
    assert server.stop() == 0, server.log_path.read_text()[-3000:]


async def _quick(seconds: float) -> None:
    """The pusher's sleep, cut short: its backoffs reach minutes, the tests need not."""
    await asyncio.sleep(min(seconds, 0.1))


@contextlib.asynccontextmanager
async def pushing(db: Database, base_url: str, token: str) -> AsyncIterator[Metrics]:
    """A pusher writing to `base_url` for as long as the block runs; its metrics."""
    metrics = Metrics()
    peer = McpPeer(
        "session-buddy", base_url, token=SecretStr(token), credentials_in=TOKEN_SETTING, timeout_seconds=10
    )
    pusher = AgentSessionPusher(db, peer, SessionMetrics(metrics), poll_seconds=0.05, sleep=_quick)
    task = asyncio.create_task(pusher.run())
    try:
        yield metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened")


async def _drained(db: Database) -> None:
    async def empty() -> bool:
        return await agent_session_outbox.backlog(db) == 0

    await _until(empty, "the outbox emptying")


async def _entries(db: Database) -> list[dict[str, Any]]:
    """The outbox's rows as they are (to queue them again, as a pusher that died would leave them)."""
    async with db.session() as session:
        rows = (await session.scalars(select(AgentSessionEntry).order_by(AgentSessionEntry.id))).all()
        columns = [c.key for c in AgentSessionEntry.__table__.columns if c.key != "id"]
        return [{c: getattr(row, c) for c in columns} for row in rows]


Written = dict[str, tuple[dict[str, Any], list[Any]]]
"""Per repository: its one session, and its memories."""


async def _written(server: RunningServer, token: str) -> Written:
    """Each repository's one session and its memories, as Session-Buddy holds them."""
    found = {}
    for repo in ENDINGS:
        sessions = await sessions_of(server, token, repo)
        assert len(sessions) == 1, sessions
        found[repo] = (sessions[0], await memories_of(server, token, repo))
    return found


async def test_sessions_wait_while_session_buddy_is_down_and_are_written_once_it_is_back(
    sqlite_db: Database, tmp_path: Path
) -> None:
    token = buddy_token("down-then-up")
    port = free_port()
    async with harness(sqlite_db, tmp_path) as h:
        workflow_id = await _run_agent(h)
    async with pushing(sqlite_db, f"http://127.0.0.1:{port}", token) as metrics:

        async def failed_thrice() -> bool:
            return _sample(metrics, "mahavishnu_session_buddy_push_failures_total") >= 3

        await _until(failed_thrice, "three failed deliveries")
        assert await agent_session_outbox.backlog(sqlite_db) == len(ENDINGS)
        server = await asyncio.to_thread(start_buddy, tmp_path / "buddy", port)
        try:
            await _drained(sqlite_db)
            written = await _written(server, token)
        finally:
            assert server.stop() == 0, server.log_path.read_text()[-3000:]
    assert _sample(metrics, "mahavishnu_session_buddy_sessions_written_total") == len(ENDINGS)
    assert _sample(metrics, "mahavishnu_session_buddy_outbox_lag") == 0

    for repo, (status, exit_code) in ENDINGS.items():
        session, memories = written[repo]
        assert (session["project"], session["repo"], session["goal"], session["status"]) == (
            repo,
            str(h.repo(repo)),
            PROMPT,
            "ended",
        )
        assert f"ended {status}, exit code {exit_code}" in session["handoff"]
        assert f"agent in {repo}: {PROMPT}" in session["handoff"], "the output's end is handed off"
        by_kind = {m["kind"]: m for m in memories}
        assert sorted(by_kind) == ["fact", "note"]
        assert {m["session_id"] for m in memories} == {session["id"]}
        assert by_kind["note"]["tags"] == sorted(["mahavishnu", "agent", "prompt", status])
        assert by_kind["fact"]["tags"] == sorted(["mahavishnu", "agent", "outcome", status])
        assert by_kind["note"]["content"].endswith(f":\n{PROMPT}")
        assert workflow_id in by_kind["note"]["content"]
        outcome = by_kind["fact"]["content"]
        assert f"in repository {repo} " in outcome
        assert f"ended {status}, exit code {exit_code}" in outcome
        assert f"agent in {repo}: {PROMPT}" in outcome


async def test_a_replayed_delivery_adds_no_memory(
    sqlite_db: Database, tmp_path: Path, buddy: RunningServer
) -> None:
    """Replays as pushers that died would leave them: after the session was ended (nothing is
    written again), and before the session it started was noted (its memories are not written
    again; the one cost is an empty session, the known window of `agent_session_pusher`)."""
    token = buddy_token("replays")
    async with harness(sqlite_db, tmp_path) as h:
        await _run_agent(h)
    queued = await _entries(sqlite_db)
    async with pushing(sqlite_db, buddy.base, token):
        await _drained(sqlite_db)
    first = await _written(buddy, token)
    repo_of = {
        e["run_id"]: next(r for r in ENDINGS if all(e["run_id"] in m["content"] for m in first[r][1]))
        for e in queued
    }
    assert sorted(repo_of.values()) == sorted(ENDINGS), "each memory names its run"

    after_end = [{**e, "session_id": first[repo_of[e["run_id"]]][0]["id"]} for e in queued]
    async with sqlite_db.session() as db_session:
        await db_session.execute(insert(AgentSessionEntry), [*after_end, queued[0]])
    async with pushing(sqlite_db, buddy.base, token):
        await _drained(sqlite_db)

    for repo in ENDINGS:
        sessions = await sessions_of(buddy, token, repo)
        memories = await memories_of(buddy, token, repo)
        assert [m["id"] for m in memories] == [m["id"] for m in first[repo][1]], "no memory twice"
        session, *extra = sorted(sessions, key=lambda s: s["started_at"])
        assert session == first[repo][0], "an ended session is not ended again"
        if repo == repo_of[queued[0]["run_id"]]:  # the replay without its session started one
            assert [(s["status"], s["goal"]) for s in extra] == [("ended", PROMPT)]
            assert {m["session_id"] for m in memories} == {session["id"]}
        else:
            assert extra == []


async def test_two_pushers_on_one_database_write_each_run_once(
    database: Database, tmp_path: Path, buddy: RunningServer
) -> None:
    tenant = f"replicas-{database.dialect}"
    token = buddy_token(tenant)
    async with harness(database, tmp_path, fleet={f"r{i}": [] for i in range(8)}) as h:
        summary = await h.service.trigger(ADMIN, "agent", params={"prompt": "Bump the version."})
        await h.wait(summary.workflow_id)
    async with pushing(database, buddy.base, token) as one, pushing(database, buddy.base, token) as two:
        await _drained(database)
    written = [_sample(m, "mahavishnu_session_buddy_sessions_written_total") for m in (one, two)]
    assert sum(written) == 8
    for i in range(8):
        assert len(await sessions_of(buddy, token, f"r{i}")) == 1
    assert len(await memories_of(buddy, token)) == 16


async def test_a_long_prompt_and_output_are_cut_to_what_session_buddy_takes(
    sqlite_db: Database, tmp_path: Path, buddy: RunningServer
) -> None:
    """The agent takes prompts of 20,000 characters and the tail may be longer still; Session-Buddy
    takes 16,000 per text by default: the prompt's head and the output's end are written."""
    token = buddy_token("long")
    prompt = "bytes:30000 " + "rewrite " * 2400
    async with harness(sqlite_db, tmp_path, fleet={"alpha": []}, output_tail_bytes=65536) as h:
        await h.wait((await h.service.trigger(ADMIN, "agent", params={"prompt": prompt})).workflow_id)
    async with pushing(sqlite_db, buddy.base, token):
        await _drained(sqlite_db)
    (session,) = await sessions_of(buddy, token, "alpha")
    assert session["goal"] == prompt.strip()[:TEXT_CHARS] + " [...]"
    by_kind = {m["kind"]: m["content"] for m in await memories_of(buddy, token, "alpha")}
    assert by_kind["note"].endswith(prompt.strip()[:TEXT_CHARS] + " [...]")
    assert by_kind["fact"].endswith("[...] " + "x" * TEXT_CHARS), "the output's end"
    assert all(len(content) < 9000 for content in by_kind.values())


async def test_a_refused_token_is_an_error_and_no_token_is_logged(
    sqlite_db: Database, tmp_path: Path, buddy: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = buddy_token("refused")
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    async with harness(sqlite_db, tmp_path) as h:
        await _run_agent(h)
    with structlog.testing.capture_logs() as logs:
        for url, token in ((buddy.base, forged), (f"http://127.0.0.1:{free_port()}", good)):
            async with pushing(sqlite_db, url, token) as metrics:

                async def failed_twice() -> bool:
                    return _sample(metrics, "mahavishnu_session_buddy_push_failures_total") >= 2

                await _until(failed_twice, "two failed deliveries")
            async with sqlite_db.session() as db_session:  # as once the lease ran out
                ran_out = update(AgentSessionEntry).values(lease_owner=None, lease_expires_at=None)
                await db_session.execute(ran_out)
    failed = [e for e in logs if e["event"] == "session_buddy_sessions_push_failed"]
    refused = [e for e in failed if e["log_level"] == "error"]
    down = [e for e in failed if e["log_level"] == "warning"]
    assert refused, failed
    assert all(e["error"].startswith("ConfigurationError") and TOKEN_SETTING in e["error"] for e in refused)
    assert down, failed
    assert all(e["error"].startswith("ServiceUnavailableError: cannot reach") for e in down), down
    assert await agent_session_outbox.backlog(sqlite_db) == len(ENDINGS), "nothing skipped"
    everything = repr(logs) + caplog.text
    for secret in (good, forged, good.split(".")[2]):
        assert secret not in everything
    assert await sessions_of(buddy, good, "alpha") == []


def test_the_settings_name_session_buddy_and_production_needs_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAHAVISHNU_SESSION_BUDDY_URL", "http://session-buddy:8678/")
    monkeypatch.setenv(TOKEN_SETTING, "a-token-for-session-buddy")
    settings = MahavishnuSettings()
    assert settings.session_buddy_url == "http://session-buddy:8678"
    assert settings.session_buddy_token is not None
    assert settings.session_buddy_token.get_secret_value() == "a-token-for-session-buddy"
    assert "a-token-for-session-buddy" not in repr(settings)
    assert MahavishnuSettings.env_names()["session_buddy_token"] == TOKEN_SETTING
    with pytest.raises(ValidationError, match=TOKEN_SETTING):
        MahavishnuSettings(session_buddy_url="http://mahavishnu:secret@session-buddy:8678")
    with pytest.raises(ValidationError, match="http"):
        MahavishnuSettings(session_buddy_url="ftp://session-buddy")
    monkeypatch.delenv(TOKEN_SETTING)
    production = MahavishnuSettings(env="production")
    assert any(TOKEN_SETTING in problem for problem in production.check_secure(listening=False))
    monkeypatch.delenv("MAHAVISHNU_SESSION_BUDDY_URL")
    off = MahavishnuSettings(env="production")
    assert not any(TOKEN_SETTING in problem for problem in off.check_secure(listening=False))
