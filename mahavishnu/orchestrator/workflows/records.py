"""Engine-neutral records: the shapes every engine passes around, and the workflow's own rows.

Queueing a workflow, cancelling what has not started, and closing workflows whose runs all ended
are the same for the local engine and for an engine on another runtime, so they live here (with
`outcomes.py`, which records attempts), apart from the local queue's mechanics (claims, leases,
healing: `local/queue.py`). Every function takes the caller's session and none commits: the caller owns the
transaction, so "record these attempts, move the breakers, file dead letters, claim more runs"
commits or fails as one. The hot path uses Core statements and executemany: one round trip per
batch, not per run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import outcome_outbox
from mahavishnu.orchestrator.workflows.decisions import AttemptResult
from mahavishnu.orchestrator.workflows.models import Attempt, CircuitState, DeadLetter, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus, rollup

__all__ = [
    "Claimed",
    "Closed",
    "Gauges",
    "Outcome",
    "add_workflow",
    "cancel_queued",
    "cancelled_among",
    "close_settled_workflows",
    "finalize_workflows",
    "gauges",
    "reopen_dead_letters",
]

ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
RUNS = cast(Table, RepoRun.__table__)
WORKFLOWS = cast(Table, Workflow.__table__)
ATTEMPTS = cast(Table, Attempt.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What an engine needs to execute one attempt of a run it took."""

    run_id: str
    workflow_id: str
    workflow_name: str
    repo: str
    repo_path: str
    argv: list[str]
    attempt: int
    max_attempts: int
    dlq_retry: bool
    trace_parent: str | None = None


@dataclass(slots=True)
class Outcome:
    """One finished attempt, waiting to be recorded; `status` is what recording decided."""

    claimed: Claimed
    result: AttemptResult
    started_at: datetime
    log_path: str
    started: bool = True
    """False when the run was cancelled while it waited for a slot: that is no attempt."""
    status: str = ""


class Closed(NamedTuple):
    """A workflow that just ended, with what its span needs."""

    id: str
    name: str
    status: str
    created_at: datetime
    finished_at: datetime
    trace_parent: str | None


class Gauges(NamedTuple):
    queued: int
    dead_letters: int
    open_circuits: int


# --- queue ------------------------------------------------------------------------------------


async def add_workflow(session: AsyncSession, workflow: Workflow, runs: Sequence[Mapping[str, Any]]) -> None:
    """Store a workflow and its queued runs (one executemany: a thousand repos is one batch)."""
    session.add(workflow)
    await session.flush()
    await session.execute(insert(RUNS), list(runs))


async def cancel_queued(session: AsyncSession, workflow_id: str, now: datetime) -> int:
    """Cancel a workflow's runs that have not started (waiting for a slot or a retry)."""
    ids = (
        await session.scalars(
            select(RepoRun.id).where(RepoRun.workflow_id == workflow_id, RepoRun.status == RunStatus.QUEUED)
        )
    ).all()
    if ids:
        await session.execute(
            update(RepoRun)
            .where(RepoRun.id.in_(ids), RepoRun.status == RunStatus.QUEUED)
            .values(status=RunStatus.CANCELLED, finished_at=now, error="cancelled before it started")
        )
        await reopen_dead_letters(session, ids, now)
    return len(ids)


async def cancelled_among(session: AsyncSession, workflow_ids: Collection[str]) -> set[str]:
    if not workflow_ids:
        return set()
    rows = await session.scalars(
        select(Workflow.id).where(Workflow.id.in_(workflow_ids), Workflow.cancel_requested.is_(True))
    )
    return set(rows.all())


# --- dead letters ------------------------------------------------------------------------------


async def reopen_dead_letters(session: AsyncSession, run_ids: Collection[str], now: datetime) -> None:
    """A DLQ retry that was cancelled goes back to `open`, so it can be retried again or purged."""
    await session.execute(
        update(DeadLetter)
        .where(DeadLetter.run_id.in_(run_ids), DeadLetter.status == "retrying")
        .values(status="open", updated_at=now)
    )


# --- closing workflows -------------------------------------------------------------------------


async def finalize_workflows(
    session: AsyncSession, workflow_ids: Collection[str], now: datetime
) -> list[Closed]:
    """Close every workflow among `workflow_ids` whose runs are all final; returns those this
    transaction closed (a workflow another transaction closed first is not returned: each close
    is counted exactly once), each queued for Akosha in this same transaction."""
    if not workflow_ids:
        return []
    still_open = set(
        (
            await session.scalars(
                select(RepoRun.workflow_id)
                .where(RepoRun.workflow_id.in_(workflow_ids), RepoRun.status.in_(ACTIVE))
                .distinct()
            )
        ).all()
    )
    done = [w for w in workflow_ids if w not in still_open]
    if not done:
        return []
    closed = await _rolled_up(session, done, now)
    flows = WORKFLOWS.c
    won = []
    for workflow in closed:  # one at a time, rarely more than one: each close counted exactly once
        result = await session.execute(
            update(WORKFLOWS)
            .where(flows.id == workflow.id, flows.finished_at.is_(None))
            .values(status=workflow.status, finished_at=now)
        )
        if cast(CursorResult[Any], result).rowcount == 1:  # else a concurrent transaction closed it
            won.append(workflow)
    await outcome_outbox.queue(session, [(workflow.id, workflow.finished_at) for workflow in won])
    return won


async def _rolled_up(session: AsyncSession, done: Collection[str], now: datetime) -> list[Closed]:
    """The unfinished workflows among `done`, with the status their runs roll up to."""
    statuses: dict[str, list[str]] = {}
    for workflow_id, status, count in (
        await session.execute(
            select(RepoRun.workflow_id, RepoRun.status, func.count())
            .where(RepoRun.workflow_id.in_(done))
            .group_by(RepoRun.workflow_id, RepoRun.status)
        )
    ).all():
        statuses.setdefault(workflow_id, []).extend([status] * count)
    rows = (
        await session.execute(
            select(
                Workflow.id,
                Workflow.name,
                Workflow.cancel_requested,
                Workflow.created_at,
                Workflow.trace_parent,
            ).where(Workflow.id.in_(done), Workflow.finished_at.is_(None))
        )
    ).all()
    return [
        Closed(
            r.id,
            r.name,
            rollup(statuses.get(r.id, []), cancel_requested=r.cancel_requested).value,
            r.created_at,
            now,
            r.trace_parent,
        )
        for r in rows
    ]


async def close_settled_workflows(session: AsyncSession, now: datetime) -> list[Closed]:
    """Close open workflows none of whose runs is queued or running any more.

    Every path that ends a run checks its workflow at once; this sweep catches the rare close
    that two transactions racing each other both missed (a cancel and a record committing at
    the same moment, each seeing the other's run still active)."""
    active = select(RepoRun.id).where(RepoRun.workflow_id == Workflow.id, RepoRun.status.in_(ACTIVE))
    # `status` narrows it to open workflows by its index (`finished_at` has none).
    open_statuses = (WorkflowStatus.QUEUED, WorkflowStatus.RUNNING)
    unfinished = Workflow.status.in_(open_statuses) & Workflow.finished_at.is_(None)
    settled = await session.scalars(select(Workflow.id).where(unfinished, ~active.exists()))
    return await finalize_workflows(session, set(settled.all()), now)


async def gauges(session: AsyncSession) -> Gauges:
    queued = await session.scalar(select(func.count()).where(RepoRun.status == RunStatus.QUEUED))
    dead = await session.scalar(select(func.count()).where(DeadLetter.status != "resolved"))
    circuits = await session.scalar(select(func.count()).where(CircuitState.state != "closed"))
    return Gauges(int(queued or 0), int(dead or 0), int(circuits or 0))
