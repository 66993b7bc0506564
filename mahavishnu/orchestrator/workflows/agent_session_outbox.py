"""The outbox of agent runs to Session-Buddy: every run of the `agent` workflow that ran the
agent is queued here, whatever its final status, in the transaction that records its end
(`outcomes.record_outcomes`, through which every engine records attempts), so none is lost
whatever fails after and the workflow never waits for Session-Buddy. The pusher
(`orchestrator/agent_session_pusher.py`) writes each as a session and deletes it once written.

An entry keeps what its attempt left (status, exit code, error, output tail): a retry from the
dead-letter queue ends the same run again, later, as a new entry, and overwrites the run's row.
A run that never started (cancelled before its turn, skipped by an open circuit) ran no agent
and has no session.

Pushers of several replicas share the table: each takes entries under a lease
(`lease_owner`, `lease_expires_at`), so two never write the same run at once; a pusher that died
leaves its entries to the others once the lease ran out, and the session it had started
(`session_id`) is continued, not started again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import AgentSessionEntry, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.records import Outcome
from mahavishnu.platform.db import Database

__all__ = ["AGENT_WORKFLOW", "AgentRun", "backlog", "claim", "queue", "settle", "started"]

AGENT_WORKFLOW = "agent"
"""The workflow whose runs become sessions: the built-in one, or the operator's of that name."""


async def queue(session: AsyncSession, finals: Sequence[Outcome], now: datetime) -> None:
    """Queue the agent runs among `finals` (runs this transaction ended) that ran the agent."""
    rows = [
        {
            "run_id": o.claimed.run_id,
            "attempt": o.claimed.attempt,
            "status": o.status,
            "exit_code": o.result.exit_code,
            "error": o.result.error,
            "output_tail": o.result.output_tail,
            "duration_seconds": o.result.duration_seconds,
            "finished_at": now,
        }
        for o in finals
        if o.started and o.claimed.workflow_name == AGENT_WORKFLOW
    ]
    if rows:
        await session.execute(insert(AgentSessionEntry), rows)


@dataclass(frozen=True, slots=True)
class AgentRun:
    """One queued run, as the pusher writes it."""

    entry_id: int
    run_id: str
    workflow_id: str
    repo: str
    repo_path: str
    prompt: str
    """The caller's `prompt`; the workflow's parameters as JSON when it has none."""
    attempt: int
    status: str
    exit_code: int | None
    error: str | None
    output_tail: str | None
    duration_seconds: float | None
    finished_at: datetime
    session_id: str | None
    trace_parent: str | None


async def claim(
    db: Database, *, owner: str, limit: int, lease_seconds: float, now: datetime
) -> list[AgentRun]:
    """The oldest entries no other pusher holds (at most `limit`), leased to `owner` until
    `lease_seconds` from `now`. Each is taken by one conditional update, so of two pushers
    racing for an entry exactly one gets it."""
    entry = AgentSessionEntry
    free = or_(entry.lease_expires_at.is_(None), entry.lease_expires_at < now, entry.lease_owner == owner)
    until = now + timedelta(seconds=lease_seconds)
    async with db.session() as session:
        candidates = (
            await session.scalars(select(entry.id).where(free).order_by(entry.id).limit(limit))
        ).all()
        taken = []
        for entry_id in candidates:
            result = await session.execute(
                update(entry)
                .where(entry.id == entry_id, free)
                .values(lease_owner=owner, lease_expires_at=until)
            )
            if cast(CursorResult[Any], result).rowcount == 1:
                taken.append(entry_id)
        if not taken:
            return []
        rows = await session.execute(
            select(entry, RepoRun.workflow_id, RepoRun.repo, RepoRun.repo_path)
            .add_columns(Workflow.params, RepoRun.trace_parent)
            .join(RepoRun, RepoRun.id == entry.run_id)
            .join(Workflow, Workflow.id == RepoRun.workflow_id)
            .where(entry.id.in_(taken))
            .order_by(entry.id)
        )
        return [_run(*row) for row in rows]


async def started(db: Database, entry_id: int, session_id: str) -> None:
    """Remember the session started for an entry, so a retried delivery continues it."""
    async with db.session() as session:
        await session.execute(
            update(AgentSessionEntry).where(AgentSessionEntry.id == entry_id).values(session_id=session_id)
        )


async def settle(db: Database, entry_id: int) -> None:
    """Take an entry off the queue: its session is written."""
    async with db.session() as session:
        await session.execute(delete(AgentSessionEntry).where(AgentSessionEntry.id == entry_id))


async def backlog(db: Database) -> int:
    """How many agent runs wait for their session."""
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AgentSessionEntry)) or 0)


def _run(
    entry: AgentSessionEntry,
    workflow_id: str,
    repo: str,
    repo_path: str,
    params: dict[str, Any],
    trace_parent: str | None,
) -> AgentRun:
    prompt = params.get("prompt")
    return AgentRun(
        entry_id=entry.id,
        run_id=entry.run_id,
        workflow_id=workflow_id,
        repo=repo,
        repo_path=repo_path,
        prompt=prompt if isinstance(prompt, str) else json.dumps(params, sort_keys=True),
        attempt=entry.attempt,
        status=entry.status,
        exit_code=entry.exit_code,
        error=entry.error,
        output_tail=entry.output_tail,
        duration_seconds=entry.duration_seconds,
        finished_at=entry.finished_at,
        session_id=entry.session_id,
        trace_parent=trace_parent,
    )
