"""Queries over the workflow tables. Every function takes the caller's session; none commits.

The caller (the engine, the service) owns the transaction, so a unit of work
such as "record an attempt, move the breaker, file a dead letter" commits
or fails as one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import (
    Attempt,
    CircuitState,
    DeadLetter,
    Instance,
    RepoRun,
    Workflow,
)
from mahavishnu.orchestrator.workflows.states import FINAL_RUN_STATUSES, RunStatus, WorkflowStatus, rollup
from mahavishnu.platform.ids import new_id


async def claim_runs(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    capacity: int,
    per_workflow_room: dict[str, int],
    limits: dict[str, int],
) -> list[RepoRun]:
    """Take up to `capacity` queued runs whose backoff has passed, oldest first.

    `limits` maps a workflow name to its per-workflow concurrency; `per_workflow_room`
    says how many more of a given workflow id this engine may start. The update is
    conditional on the run still being queued, so two engines never claim one run.
    """
    candidates = (
        await session.execute(
            select(RepoRun.id, RepoRun.workflow_id, RepoRun.workflow_name)
            .where(
                RepoRun.status == RunStatus.QUEUED,
                or_(RepoRun.next_attempt_at.is_(None), RepoRun.next_attempt_at <= now),
            )
            .order_by(RepoRun.created_at, RepoRun.id)
            .limit(capacity * 4)
        )
    ).all()
    chosen: list[str] = []
    room = dict(per_workflow_room)
    for run_id, workflow_id, workflow_name in candidates:
        left = room.get(workflow_id, limits.get(workflow_name, capacity))
        if left <= 0:
            continue
        room[workflow_id] = left - 1
        chosen.append(run_id)
        if len(chosen) == capacity:
            break
    if not chosen:
        return []
    claimed = (
        await session.scalars(
            update(RepoRun)
            .where(RepoRun.id.in_(chosen), RepoRun.status == RunStatus.QUEUED)
            .values(
                status=RunStatus.RUNNING,
                owner=owner,
                lease_expires_at=lease_until,
                attempt=RepoRun.attempt + 1,
                started_at=func.coalesce(RepoRun.started_at, now),
                next_attempt_at=None,
            )
            .returning(RepoRun.id)
        )
    ).all()
    if not claimed:
        return []
    runs = list((await session.scalars(select(RepoRun).where(RepoRun.id.in_(claimed)))).all())
    await session.execute(
        update(Workflow)
        .where(Workflow.id.in_({r.workflow_id for r in runs}), Workflow.status == WorkflowStatus.QUEUED)
        .values(status=WorkflowStatus.RUNNING, started_at=now)
    )
    runs.sort(key=lambda r: (r.created_at, r.id))
    return runs


async def circuits_for(session: AsyncSession, repos: Collection[str]) -> dict[str, CircuitState]:
    if not repos:
        return {}
    rows = await session.scalars(select(CircuitState).where(CircuitState.repo.in_(repos)))
    return {row.repo: row for row in rows}


async def record_circuit(
    session: AsyncSession,
    repo: str,
    *,
    success: bool,
    threshold: int,
    now: datetime,
    current: CircuitState | None,
) -> CircuitState | None:
    """Move a repository's breaker after a run's final outcome; returns the row when it changed."""
    if success:
        if current is None or (current.state == "closed" and current.consecutive_failures == 0):
            return None
        current.state, current.consecutive_failures = "closed", 0
        current.opened_at, current.probe_run_id, current.updated_at = None, None, now
        return current
    if current is None:
        current = CircuitState(repo=repo, state="closed", consecutive_failures=0, updated_at=now)
        session.add(current)
    current.consecutive_failures += 1
    if current.state == "half_open" or current.consecutive_failures >= threshold:
        current.state, current.opened_at = "open", now
    current.probe_run_id, current.updated_at = None, now
    return current


async def add_attempt(session: AsyncSession, attempt: Attempt) -> None:
    session.add(attempt)


async def file_dead_letter(
    session: AsyncSession, run: RepoRun, *, now: datetime, inputs: dict[str, Any]
) -> None:
    """A run that used up its attempts: reopen its entry if it was a DLQ retry, else file a new one."""
    existing = await session.scalar(
        select(DeadLetter).where(DeadLetter.run_id == run.id, DeadLetter.status != "resolved")
    )
    if existing is not None:
        existing.status, existing.last_error, existing.attempts, existing.updated_at = (
            "open",
            run.error,
            run.attempt,
            now,
        )
        return
    session.add(
        DeadLetter(
            id=new_id(),
            run_id=run.id,
            workflow_id=run.workflow_id,
            workflow_name=run.workflow_name,
            repo=run.repo,
            inputs=inputs,
            last_error=run.error,
            attempts=run.attempt,
            retries=0,
            status="open",
            created_at=now,
            updated_at=now,
        )
    )


async def resolve_dead_letter(session: AsyncSession, run_id: str, now: datetime) -> None:
    await session.execute(
        update(DeadLetter)
        .where(DeadLetter.run_id == run_id, DeadLetter.status == "retrying")
        .values(status="resolved", updated_at=now)
    )


async def finalize_workflows(
    session: AsyncSession, workflow_ids: Collection[str], now: datetime
) -> list[Workflow]:
    """Close every workflow among `workflow_ids` whose runs are all final; returns those closed."""
    if not workflow_ids:
        return []
    open_runs = set(
        (
            await session.scalars(
                select(RepoRun.workflow_id)
                .where(RepoRun.workflow_id.in_(workflow_ids), RepoRun.status.not_in(FINAL_RUN_STATUSES))
                .distinct()
            )
        ).all()
    )
    done_ids = [w for w in workflow_ids if w not in open_runs]
    if not done_ids:
        return []
    statuses: dict[str, list[str]] = {}
    for workflow_id, status in (
        await session.execute(
            select(RepoRun.workflow_id, RepoRun.status).where(RepoRun.workflow_id.in_(done_ids))
        )
    ).all():
        statuses.setdefault(workflow_id, []).append(status)
    closed: list[Workflow] = []
    for workflow in (
        await session.scalars(
            select(Workflow).where(Workflow.id.in_(done_ids), Workflow.finished_at.is_(None))
        )
    ).all():
        workflow.status = rollup(statuses.get(workflow.id, []), cancel_requested=workflow.cancel_requested)
        workflow.finished_at = now
        closed.append(workflow)
    return closed


async def renew_leases(session: AsyncSession, *, run_ids: Collection[str], lease_until: datetime) -> None:
    """Extend the leases of the runs an engine is executing right now (and only those)."""
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


async def orphaned_runs(
    session: AsyncSession, *, now: datetime, dead_owners: Collection[str]
) -> list[RepoRun]:
    """Runs marked running whose owner is gone: lease expired, or a dead process on this host."""
    condition = RepoRun.lease_expires_at < now
    if dead_owners:
        condition = or_(condition, RepoRun.owner.in_(dead_owners))
    return list(
        (await session.scalars(select(RepoRun).where(RepoRun.status == RunStatus.RUNNING, condition))).all()
    )


async def instances_on(session: AsyncSession, hostname: str) -> Sequence[Instance]:
    return (await session.scalars(select(Instance).where(Instance.hostname == hostname))).all()


async def forget_instances(session: AsyncSession, ids: Collection[str]) -> None:
    if ids:
        await session.execute(delete(Instance).where(Instance.id.in_(ids)))


async def cancelled_among(session: AsyncSession, workflow_ids: Collection[str]) -> set[str]:
    if not workflow_ids:
        return set()
    rows = await session.scalars(
        select(Workflow.id).where(Workflow.id.in_(workflow_ids), Workflow.cancel_requested.is_(True))
    )
    return set(rows.all())


async def cancel_queued(session: AsyncSession, workflow_id: str, now: datetime) -> int:
    result = await session.execute(
        update(RepoRun)
        .where(RepoRun.workflow_id == workflow_id, RepoRun.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=now, error="cancelled before it started")
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def list_workflows(
    session: AsyncSession,
    *,
    status: str | None,
    name: str | None,
    since: datetime | None,
    before_id: str | None,
    limit: int,
) -> list[Workflow]:
    """Newest first; `before_id` continues a previous page (ids sort by creation time)."""
    query = select(Workflow)
    if status:
        query = query.where(Workflow.status == status)
    if name:
        query = query.where(Workflow.name == name)
    if since:
        query = query.where(Workflow.created_at >= since)
    if before_id:
        query = query.where(Workflow.id < before_id)
    return list((await session.scalars(query.order_by(Workflow.id.desc()).limit(limit))).all())


async def search_runs(session: AsyncSession, dialect: str, query_text: str, limit: int) -> list[RepoRun]:
    """Full-text search over output tails and errors (FTS5 on SQLite, tsvector on PostgreSQL)."""
    if dialect == "postgresql":
        document = func.to_tsvector(
            text("'simple'"), func.coalesce(RepoRun.output_tail, "") + " " + func.coalesce(RepoRun.error, "")
        )
        condition = document.op("@@")(func.plainto_tsquery(text("'simple'"), query_text))
        query = select(RepoRun).where(condition)
    else:
        terms = " ".join('"' + word.replace('"', '""') + '"' for word in query_text.split())
        if not terms:
            return []
        matching = text("SELECT rowid FROM repo_runs_fts WHERE repo_runs_fts MATCH :terms").bindparams(
            terms=terms
        )
        query = select(RepoRun).where(text("repo_runs.rowid IN (" + str(matching) + ")")).params(terms=terms)
    return list((await session.scalars(query.order_by(RepoRun.created_at.desc()).limit(limit))).all())


async def count_queued(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(RepoRun.status == RunStatus.QUEUED)) or 0)


async def count_open_dead_letters(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(DeadLetter.status != "resolved")) or 0)


async def count_open_circuits(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(CircuitState.state != "closed")) or 0)


async def run_durations(session: AsyncSession) -> list[tuple[str, str, float | None]]:
    rows = await session.execute(
        select(RepoRun.workflow_name, RepoRun.status, RepoRun.duration_seconds).where(
            RepoRun.status.in_(FINAL_RUN_STATUSES)
        )
    )
    return [(r[0], r[1], r[2]) for r in rows.all()]


async def workflow_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    rows = await session.execute(
        select(Workflow.name, Workflow.status, func.count()).group_by(Workflow.name, Workflow.status)
    )
    return [(r[0], r[1], int(r[2])) for r in rows.all()]


def lease_deadline(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
