"""The local engine's queue mechanics over the shared tables: claims, leases, healing, instances.

Engines of this kind share one database: each claims queued runs with a conditional update (two
never take one run), holds them under a lease it renews, and heals the runs of engines that died.
None of this is needed by an engine whose runtime schedules and retries for it; what every engine
needs (recording outcomes, breakers, dead letters, closing workflows) is in `records.py`. Every
function takes the caller's session; none commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import Attempt, DeadLetter, Instance, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.outcomes import skip_open_circuits
from mahavishnu.orchestrator.workflows.records import (
    RUNS,
    WORKFLOWS,
    Claimed,
    Closed,
    cancelled_among,
    finalize_workflows,
    reopen_dead_letters,
)
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus

__all__ = [
    "Claims",
    "claim_runs",
    "forget_instances",
    "heal_orphans",
    "heal_owned",
    "heartbeat",
    "instances_on",
    "mark_started",
    "release_runs",
    "renew_leases",
]


# --- claim ---------------------------------------------------------------------------------


class Claims(NamedTuple):
    """What one claim took."""

    runs: list[Claimed]
    """The runs to execute."""
    skipped: list[Claimed]
    """Runs of repositories whose breaker is open, not to execute."""
    closed: list[Closed]
    """Workflows the skips closed."""
    exhausted: bool
    """Fewer runs were due than the limit: the queue ran empty (runs another engine took
    between the read and the update do not count: they say nothing of what is left)."""


async def claim_runs(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    only: Collection[str] | None,
    cooldown_seconds: float,
    running_here: Collection[str] = (),
    exclude: Collection[str] = (),
) -> Claims:
    """Take up to `limit` queued runs whose backoff has passed, oldest first.

    The update is conditional on the run still being queued, so two engines never claim one
    run. Runs of cancelled workflows are not taken. A repository whose breaker is open gets
    its run skipped (returned second); once the cooldown passed, one run probes.
    `running_here`: workflows the caller knows are marked running already (it holds their runs).
    `exclude`: workflows not to take runs of now (the caller holds enough of them).
    """
    ids = await _claimable(session, now=now, limit=limit, only=only, exclude=exclude)
    exhausted = len(ids) < limit
    rows = await _take(session, ids, owner=owner, lease_until=lease_until) if ids else []
    if not rows:
        return Claims([], [], [], exhausted)
    retrying = await _dlq_retries(session, [r.id for r in rows])
    claimed = [
        Claimed(
            r.id,
            r.workflow_id,
            r.workflow_name,
            r.repo,
            r.repo_path,
            list(r.argv),
            r.attempt,
            r.max_attempts,
            r.id in retrying,
            r.trace_parent,
        )
        for r in rows
    ]
    await _mark_running(session, {c.workflow_id for c in claimed} - set(running_here), now)
    skipped = await skip_open_circuits(session, claimed, now, cooldown_seconds)
    closed = await finalize_workflows(session, {c.workflow_id for c in skipped}, now) if skipped else []
    return Claims([c for c in claimed if c not in skipped], skipped, closed, exhausted)


async def _claimable(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    only: Collection[str] | None,
    exclude: Collection[str],
) -> Sequence[str]:
    """Ids of queued runs due now, oldest first, of workflows not cancelled."""
    cancelled = select(Workflow.id).where(Workflow.cancel_requested.is_(True))
    query = select(RepoRun.id).where(
        RepoRun.status == RunStatus.QUEUED,
        or_(RepoRun.next_attempt_at.is_(None), RepoRun.next_attempt_at <= now),
        RepoRun.workflow_id.not_in(cancelled),
    )
    if only is not None:
        query = query.where(RepoRun.workflow_id.in_(only))
    if exclude:
        query = query.where(RepoRun.workflow_id.not_in(exclude))
    return (await session.scalars(query.order_by(RepoRun.created_at, RepoRun.id).limit(limit))).all()


async def _take(
    session: AsyncSession, ids: Sequence[str], *, owner: str, lease_until: datetime
) -> list[Row[Any]]:
    """Mark the runs among `ids` still queued as running under `owner` (one conditional update),
    oldest first; the rest went to another engine meanwhile."""
    runs = RUNS.c
    rows = (
        await session.execute(
            update(RUNS)  # Core, not ORM: no identity-map synchronisation on the hot path
            .where(runs.id.in_(ids), runs.status == RunStatus.QUEUED.value)
            .values(
                status=RunStatus.RUNNING.value,
                owner=owner,
                lease_expires_at=lease_until,
                attempt=runs.attempt + 1,
                next_attempt_at=None,
            )
            .returning(
                runs.id,
                runs.workflow_id,
                runs.workflow_name,
                runs.repo,
                runs.repo_path,
                runs.argv,
                runs.attempt,
                runs.max_attempts,
                runs.created_at,
                runs.trace_parent,
            )
        )
    ).all()
    return sorted(rows, key=lambda r: (r.created_at, r.id))


async def _dlq_retries(session: AsyncSession, run_ids: Collection[str]) -> set[str]:
    """The runs among `run_ids` that are retries from the dead-letter queue."""
    rows = await session.scalars(
        select(DeadLetter.run_id).where(DeadLetter.run_id.in_(run_ids), DeadLetter.status == "retrying")
    )
    return set(rows.all())


async def _mark_running(session: AsyncSession, workflow_ids: Collection[str], now: datetime) -> None:
    """Queued workflows whose first run was just taken are running from now."""
    if workflow_ids:
        flows = WORKFLOWS.c
        await session.execute(
            update(WORKFLOWS)
            .where(flows.id.in_(workflow_ids), flows.status == WorkflowStatus.QUEUED.value)
            .values(status=WorkflowStatus.RUNNING.value, started_at=now)
        )


async def mark_started(session: AsyncSession, started: Sequence[tuple[str, datetime]]) -> None:
    """Note when claimed runs really began (a claimed run waiting for a slot has no start time)."""
    if started:
        await session.execute(
            update(RUNS)
            .where(RUNS.c.id == bindparam("rid"), RUNS.c.started_at.is_(None))
            .values(started_at=bindparam("at")),
            [{"rid": run_id, "at": at} for run_id, at in started],
        )


# --- leases, instances, healing, release --------------------------------------------------------


async def renew_leases(session: AsyncSession, *, run_ids: Collection[str], lease_until: datetime) -> None:
    """Extend the leases of the runs an engine holds right now (and only those)."""
    if run_ids:
        await session.execute(
            update(RepoRun)
            .where(RepoRun.id.in_(run_ids), RepoRun.status == RunStatus.RUNNING)
            .values(lease_expires_at=lease_until)
        )


async def heartbeat(session: AsyncSession, instance: Instance, now: datetime) -> None:
    existing = await session.get(Instance, instance.id)
    if existing is None:
        session.add(instance)
    else:
        existing.heartbeat_at = now


async def instances_on(session: AsyncSession, hostname: str) -> Sequence[Instance]:
    return (await session.scalars(select(Instance).where(Instance.hostname == hostname))).all()


async def forget_instances(session: AsyncSession, ids: Collection[str]) -> None:
    if ids:
        await session.execute(delete(Instance).where(Instance.id.in_(ids)))


async def heal_orphans(
    session: AsyncSession,
    *,
    now: datetime,
    dead_owners: Collection[str],
    keep: Collection[str],
    requeue: bool,
) -> tuple[int, list[Closed]]:
    """Runs marked running whose owner is gone (lease expired, or a dead process on this host):
    the lost attempt is recorded, then the run is requeued or failed (cancelled if its workflow
    was cancelled meanwhile)."""
    condition = RepoRun.lease_expires_at < now
    if dead_owners:
        condition = or_(condition, RepoRun.owner.in_(dead_owners))
    orphans = [
        r
        for r in (
            await session.scalars(select(RepoRun).where(RepoRun.status == RunStatus.RUNNING, condition))
        ).all()
        if r.id not in keep
    ]
    return await _heal(session, orphans, now=now, requeue=requeue)


async def heal_owned(session: AsyncSession, owner: str, *, now: datetime) -> tuple[int, list[Closed]]:
    """Runs still marked running under `owner`, which knows it executes none of them now (an
    engine starting afresh): healed as `heal_orphans` heals a dead engine's runs, requeued."""
    runs = (
        await session.scalars(
            select(RepoRun).where(RepoRun.status == RunStatus.RUNNING, RepoRun.owner == owner)
        )
    ).all()
    return await _heal(session, list(runs), now=now, requeue=True)


async def _heal(
    session: AsyncSession, orphans: Sequence[RepoRun], *, now: datetime, requeue: bool
) -> tuple[int, list[Closed]]:
    if not orphans:
        return 0, []
    cancelled = await cancelled_among(session, {r.workflow_id for r in orphans})
    for run in orphans:
        session.add(
            Attempt(
                run_id=run.id,
                attempt=run.attempt,
                status="lost",
                exit_code=None,
                error=f"engine {run.owner} stopped during the attempt",
                started_at=run.started_at or now,
                finished_at=now,
                duration_seconds=0.0,
            )
        )
        run.owner, run.lease_expires_at = None, None
        if run.workflow_id in cancelled:
            run.status, run.finished_at, run.error = RunStatus.CANCELLED, now, "cancelled"
        elif requeue:
            run.status, run.next_attempt_at = RunStatus.QUEUED, None
            run.max_attempts = max(run.max_attempts, run.attempt + 1)  # a lost attempt costs no retry
        else:
            run.status, run.finished_at = RunStatus.FAILED, now
            run.error = "its engine stopped during the attempt (heal policy: fail)"
    await session.flush()
    await reopen_dead_letters(session, [r.id for r in orphans if r.workflow_id in cancelled], now)
    return len(orphans), await finalize_workflows(session, {r.workflow_id for r in orphans}, now)


async def release_runs(
    session: AsyncSession, run_ids: Collection[str], *, owner: str, now: datetime
) -> list[Closed]:
    """A stopping engine hands its unfinished runs back: requeued, or cancelled when their
    workflow was cancelled meanwhile. The interrupted attempt is not counted."""
    runs = (
        await session.scalars(
            select(RepoRun).where(
                RepoRun.id.in_(run_ids), RepoRun.owner == owner, RepoRun.status == RunStatus.RUNNING
            )
        )
    ).all()
    cancelled = await cancelled_among(session, {r.workflow_id for r in runs})
    for run in runs:
        run.owner, run.lease_expires_at, run.attempt = None, None, max(0, run.attempt - 1)
        if run.workflow_id in cancelled:
            run.status, run.finished_at, run.error = RunStatus.CANCELLED, now, "cancelled"
        else:
            run.status, run.next_attempt_at = RunStatus.QUEUED, None
    await session.flush()
    await reopen_dead_letters(session, [r.id for r in runs if r.workflow_id in cancelled], now)
    return await finalize_workflows(session, {r.workflow_id for r in runs}, now)
