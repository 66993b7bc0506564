"""Coding sessions on SQLite and PostgreSQL: the hand-off reaches the next session of the same
project (and no other), checkpoints number themselves under concurrency, ended sessions take
no more, and tenants never meet."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from mahavishnu.platform import InvalidArgumentError, NotFoundError
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.models import Checkpoint, CodingSession
from mahavishnu.session_buddy.sessions import Sessions


async def test_the_next_session_of_a_project_gets_the_hand_off(sessions: Sessions) -> None:
    first = await sessions.start("api", repo="git@example.com:api.git", goal="add SSO")
    assert first.previous_handoff is None
    await sessions.checkpoint(first.session.id, "login page done", {"branch": "sso", "step": 3})
    ended = await sessions.end(first.session.id, "next: wire the callback URL")
    assert (ended.status, ended.handoff, ended.checkpoints) == ("ended", "next: wire the callback URL", 1)
    other_project = await sessions.start("web")
    assert other_project.previous_handoff is None
    second = await sessions.start("api")
    assert second.previous_handoff is not None
    assert (second.previous_handoff.session_id, second.previous_handoff.summary) == (
        first.session.id,
        "next: wire the callback URL",
    )


async def test_checkpoints_are_numbered_once_each_under_concurrency(sessions: Sessions) -> None:
    started = await sessions.start("api")
    made = await asyncio.gather(
        *(sessions.checkpoint(started.session.id, f"step {i}", None) for i in range(6))
    )
    assert sorted(c.number for c in made) == [1, 2, 3, 4, 5, 6]
    detail = await sessions.get(started.session.id)
    assert detail.session.checkpoints == 6
    assert [c.number for c in detail.recent_checkpoints] == [6, 5, 4, 3, 2]


async def test_an_ended_session_takes_no_more(sessions: Sessions) -> None:
    started = await sessions.start("api")
    await sessions.end(started.session.id, None)
    with pytest.raises(InvalidArgumentError, match="has ended"):
        await sessions.checkpoint(started.session.id, "late", None)
    with pytest.raises(InvalidArgumentError, match="has ended"):
        await sessions.end(started.session.id, "again")


async def test_listing_filters_by_project_and_status(sessions: Sessions) -> None:
    ids = [(await sessions.start(project)).session.id for project in ("api", "web", "api")]
    await sessions.end(ids[0], "done")
    page = await sessions.listing(project="api", active=None, limit=1)
    assert (page.total, [s.id for s in page.sessions]) == (2, [ids[2]])
    rest = await sessions.listing(project="api", active=None, limit=1, cursor=page.next_cursor)
    assert [s.id for s in rest.sessions] == [ids[0]]
    assert (await sessions.listing(project=None, active=True)).total == 2
    assert (await sessions.listing(project=None, active=False)).total == 1


async def test_tenants_never_meet(sessions: Sessions, other_sessions: Sessions) -> None:
    mine = await sessions.start("api", goal="secret goal")
    await sessions.end(mine.session.id, "acme hand-off")
    theirs = await other_sessions.start("api")
    assert theirs.previous_handoff is None
    for attempt in (
        other_sessions.get(mine.session.id),
        other_sessions.checkpoint(mine.session.id, "x", None),
        other_sessions.end(mine.session.id, None),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    assert (await other_sessions.listing(project="api", active=None)).total == 1


async def test_state_is_bounded_and_must_be_an_object(sessions: Sessions) -> None:
    started = await sessions.start("api")
    with pytest.raises(InvalidArgumentError, match="state"):
        await sessions.checkpoint(started.session.id, "big", {"blob": "x" * 2000})
    with pytest.raises(InvalidArgumentError, match="summary"):
        await sessions.checkpoint(started.session.id, "   ", None)


async def test_nothing_of_a_session_is_readable_in_its_rows(
    sessions: Sessions, sb_database: Database
) -> None:
    canary = "canary-session-91b2"
    started = await sessions.start(canary, repo=canary, goal=canary)
    await sessions.checkpoint(started.session.id, canary, {"note": canary})
    await sessions.end(started.session.id, canary)
    async with sb_database.session() as session:
        for table in (CodingSession, Checkpoint):
            for row in (await session.scalars(select(table))).all():
                for value in vars(row).values():
                    if isinstance(value, bytes | str):
                        raw = value if isinstance(value, bytes) else value.encode()
                        assert canary.encode() not in raw, table.__tablename__
