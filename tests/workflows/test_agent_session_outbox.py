"""The outbox of agent runs to Session-Buddy, on both engines (SQLite and PostgreSQL): every run
of the `agent` workflow that ran the agent is queued with what its attempt left, in the
transaction that records its end; a retry from the dead-letter queue queues the run again with
its new ending; entries are leased to one pusher at a time; migration 0007 adds the table to an
existing database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from mahavishnu.orchestrator.workflows import agent_session_outbox
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import harness

PROMPT = "Tidy the README. fail-in:gamma"
"""The fake agent prints `agent in REPO: PROMPT`, and fails (exit code 2) in gamma."""
ENDINGS = {"alpha": ("succeeded", 0), "beta": ("succeeded", 0), "gamma": ("failed", 2)}


async def _claim(
    db: Database, owner: str, at: datetime, limit: int = 10
) -> list[agent_session_outbox.AgentRun]:
    return await agent_session_outbox.claim(db, owner=owner, limit=limit, lease_seconds=60, now=at)


@pytest.mark.usefixtures("engine_kind")
async def test_each_agent_run_is_queued_with_what_its_attempt_left(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path) as h:
        summary = await h.service.trigger(ADMIN, "agent", params={"prompt": PROMPT})
        assert (await h.wait(summary.workflow_id)).status == "partial"
        await h.wait((await h.service.trigger(ADMIN, "git-status")).workflow_id)
    assert await agent_session_outbox.backlog(database) == len(ENDINGS), "one per agent run, none for git"
    now = datetime.now(UTC)
    runs = await _claim(database, "one", now)
    assert {r.repo: (r.status, r.exit_code) for r in runs} == ENDINGS
    shared = {(r.workflow_id, r.prompt, r.attempt, r.session_id) for r in runs}
    assert shared == {(summary.workflow_id, PROMPT, 1, None)}
    assert all(r.output_tail and f"agent in {r.repo}: {PROMPT}" in r.output_tail for r in runs)
    assert {r.repo_path for r in runs} == {str(h.repo(name)) for name in ENDINGS}


async def test_entries_are_leased_to_one_pusher_at_a_time(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        await h.wait((await h.service.trigger(ADMIN, "agent", params={"prompt": PROMPT})).workflow_id)
    now = datetime.now(UTC)
    first = [r.entry_id for r in await _claim(database, "one", now)]
    assert len(first) == len(ENDINGS)
    assert await _claim(database, "two", now) == [], "leased to the first pusher"
    assert [r.entry_id for r in await _claim(database, "one", now)] == first, "its own lease does not stop it"
    later = now + timedelta(seconds=61)
    taken_over = [r.entry_id for r in await _claim(database, "two", later, limit=2)]
    assert taken_over == first[:2], "oldest first, once the lease ran out"
    left = [r.entry_id for r in await _claim(database, "one", later)]
    assert left == first[2:], "what the second pusher holds now is its own"


async def test_a_dead_letter_retry_queues_the_run_again_with_its_new_ending(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path) as h:
        summary = await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "fail-until:2"})
        assert (await h.wait(summary.workflow_id)).status == "failed"
        [entry] = (await h.service.dead_letters(ADMIN)).dead_letters
        waiter = asyncio.create_task(h.service.until_closed(summary.workflow_id))
        await h.service.retry_dead_letter(ADMIN, entry.dead_letter_id)
        await asyncio.wait_for(waiter, 30)
    runs = await _claim(database, "one", datetime.now(UTC))
    assert [(r.attempt, r.status, r.exit_code) for r in runs] == [(1, "failed", 1), (2, "succeeded", 0)]
    assert len({r.run_id for r in runs}) == 1
    assert "attempt 1 fails on request" in (runs[0].output_tail or "")
    assert "fails on request" not in (runs[1].output_tail or ""), "each keeps its own attempt's output"


async def test_the_migration_adds_the_outbox_to_an_existing_database(database: Database) -> None:
    def tables(connection: Any) -> set[str]:
        return set(inspect(connection).get_table_names())

    await database.downgrade("0006")
    async with database.engine.connect() as connection:
        before = await connection.run_sync(tables)
    assert "akosha_outbox" in before
    assert "agent_session_outbox" not in before
    await database.upgrade()
    async with database.engine.connect() as connection:
        assert await connection.run_sync(tables) == before | {"agent_session_outbox"}
    assert (await database.schema_state()).is_current
