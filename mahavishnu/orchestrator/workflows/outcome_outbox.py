"""The outbox of workflow outcomes to Akosha: every close of a workflow is queued here in the
transaction that closes it (`records.finalize_workflows`, through which every close passes), so
none is lost whatever fails after; the pusher (`orchestrator/outcome_pusher.py`) reads the
oldest entries back as outcomes, one per repository, and settles them once Akosha accepted them.

An entry holds the workflow's id only: its runs are read when it is sent. Reading and settling
are separate transactions, so a crash in between sends those outcomes again, which Akosha
ignores (it keeps one row per source, workflow and repository, moved only to a later close).
A dead-letter retry closes a workflow again: a new entry, which sends the run's new ending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import Attempt, OutcomeOutboxEntry, RepoRun
from mahavishnu.platform.db import Database

__all__ = ["Backlog", "Batch", "backlog", "next_batch", "queue", "settle"]


async def queue(session: AsyncSession, closed: Sequence[tuple[str, datetime]]) -> None:
    """Queue the workflows (id, closed at) this transaction just closed (one executemany)."""
    if closed:
        rows = [{"workflow_id": workflow_id, "closed_at": at} for workflow_id, at in closed]
        await session.execute(insert(OutcomeOutboxEntry), rows)


@dataclass(frozen=True, slots=True)
class Batch:
    outcomes: list[dict[str, Any]]
    """What to send: one per repository of the entries' workflows, as Akosha's `WorkflowRun`."""
    entries: list[int]
    """The entries it settles once Akosha accepted every outcome."""


@dataclass(frozen=True, slots=True)
class Backlog:
    count: int
    oldest_at: datetime | None


async def next_batch(db: Database, *, max_entries: int, max_outcomes: int) -> Batch:
    """The oldest entries (at most `max_entries`) whose outcomes come to at most `max_outcomes`,
    unless the first alone has more: a workflow's outcomes are never split between batches."""
    async with db.session() as session:
        entries = (
            await session.execute(
                select(OutcomeOutboxEntry.id, OutcomeOutboxEntry.workflow_id, OutcomeOutboxEntry.closed_at)
                .order_by(OutcomeOutboxEntry.id)
                .limit(max_entries)
            )
        ).all()
        if not entries:
            return Batch([], [])
        outcomes = await _outcomes(session, {workflow_id for _, workflow_id, _ in entries})
    sent: list[dict[str, Any]] = []
    settled: list[int] = []
    for entry_id, workflow_id, closed_at in entries:
        runs = [_wire(run, closed_at) for run in outcomes.get(workflow_id, [])]
        if settled and len(sent) + len(runs) > max_outcomes:
            break
        sent += runs
        settled.append(entry_id)
    return Batch(sent, settled)


async def settle(db: Database, entries: Sequence[int]) -> int:
    """Take `entries` off the queue (Akosha has their outcomes); answers how many were there."""
    if not entries:
        return 0
    async with db.session() as session:
        result = await session.execute(
            delete(OutcomeOutboxEntry).where(OutcomeOutboxEntry.id.in_(list(entries)))
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def backlog(db: Database) -> Backlog:
    """How many closes wait, and since when the oldest."""
    async with db.session() as session:
        row = (await session.execute(select(func.count(), func.min(OutcomeOutboxEntry.closed_at)))).one()
    return Backlog(count=int(row[0] or 0), oldest_at=row[1])


async def _outcomes(session: AsyncSession, workflow_ids: set[str]) -> dict[str, list[Any]]:
    """Each workflow's final runs, with the time their attempts ran summed (None: none ran)."""
    ran = (
        select(Attempt.run_id, func.sum(Attempt.duration_seconds).label("seconds"))
        .group_by(Attempt.run_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            RepoRun.workflow_id,
            RepoRun.workflow_name,
            RepoRun.repo,
            RepoRun.status,
            RepoRun.attempt,
            RepoRun.finished_at,
            ran.c.seconds,
        )
        .outerjoin(ran, ran.c.run_id == RepoRun.id)
        .where(RepoRun.workflow_id.in_(workflow_ids), RepoRun.finished_at.is_not(None))
        .order_by(RepoRun.workflow_id, RepoRun.repo)
    )
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.workflow_id, []).append(row)
    return found


def _wire(run: Any, closed_at: datetime) -> dict[str, Any]:
    return {
        "workflow_id": run.workflow_id,
        "workflow": run.workflow_name,
        "repo": run.repo,
        "status": run.status,
        "attempts": run.attempt,
        "duration_seconds": None if run.seconds is None else float(run.seconds),
        "finished_at": (run.finished_at or closed_at).isoformat(),
    }
