"""Queries over the workflow tables. Every function takes the caller's session; none commits.

The caller (the engine, the service) owns the transaction, so a unit of work
such as "record these attempts, move the breakers, file dead letters, claim
more runs" commits or fails as one. The engine's hot path (claim, record) is
written with Core statements and executemany: one round trip per batch, not
per run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.orchestrator.workflows.models import (
    Attempt,
    CircuitState,
    DeadLetter,
    Instance,
    RepoRun,
    Workflow,
)
from mahavishnu.orchestrator.workflows.process import ProcessResult
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus, rollup
from mahavishnu.platform.ids import new_id

_ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
_RUNS = cast(Table, RepoRun.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)
_WORKFLOWS = cast(Table, Workflow.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What an engine needs to execute one attempt of a run it claimed."""

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
    result: ProcessResult
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


# --- queue -----------------------------------------------------------------------------


async def add_workflow(session: AsyncSession, workflow: Workflow, runs: Sequence[Mapping[str, Any]]) -> None:
    """Store a workflow and its queued runs (one executemany: a thousand repos is one batch)."""
    session.add(workflow)
    await session.flush()
    await session.execute(insert(_RUNS), list(runs))


# --- claim ---------------------------------------------------------------------------


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
) -> tuple[list[Claimed], list[Claimed], list[Closed]]:
    """Take up to `limit` queued runs whose backoff has passed, oldest first.

    The update is conditional on the run still being queued, so two engines never claim one
    run. Runs of cancelled workflows are not taken. A repository whose breaker is open gets
    its run skipped (returned second); once the cooldown passed, one run probes.
    `running_here`: workflows the caller knows are marked running already (it holds their runs).
    `exclude`: workflows not to take runs of now (the caller holds enough of them).
    """
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
    ids = (await session.scalars(query.order_by(RepoRun.created_at, RepoRun.id).limit(limit))).all()
    if not ids:
        return [], [], []
    runs = _RUNS.c
    rows = (
        await session.execute(
            update(_RUNS)  # Core, not ORM: no identity-map synchronisation on the hot path
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
    if not rows:
        return [], [], []
    rows = sorted(rows, key=lambda r: (r.created_at, r.id))
    retrying = set(
        (
            await session.scalars(
                select(DeadLetter.run_id).where(
                    DeadLetter.run_id.in_([r.id for r in rows]), DeadLetter.status == "retrying"
                )
            )
        ).all()
    )
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
    flows = _WORKFLOWS.c
    starting = {c.workflow_id for c in claimed} - set(running_here)
    if starting:
        await session.execute(
            update(_WORKFLOWS)
            .where(flows.id.in_(starting), flows.status == WorkflowStatus.QUEUED.value)
            .values(status=WorkflowStatus.RUNNING.value, started_at=now)
        )
    skipped = await _apply_breakers(session, claimed, now, cooldown_seconds)
    closed = await finalize_workflows(session, {c.workflow_id for c in skipped}, now) if skipped else []
    return [c for c in claimed if c not in skipped], skipped, closed


async def mark_started(session: AsyncSession, started: Sequence[tuple[str, datetime]]) -> None:
    """Note when claimed runs really began (a claimed run waiting for a slot has no start time)."""
    if started:
        await session.execute(
            update(_RUNS)
            .where(_RUNS.c.id == bindparam("rid"), _RUNS.c.started_at.is_(None))
            .values(started_at=bindparam("at")),
            [{"rid": run_id, "at": at} for run_id, at in started],
        )


async def _apply_breakers(
    session: AsyncSession, claimed: list[Claimed], now: datetime, cooldown_seconds: float
) -> list[Claimed]:
    circuits = {
        c.repo: c
        for c in (
            await session.scalars(
                select(CircuitState).where(
                    CircuitState.repo.in_({c.repo for c in claimed}), CircuitState.state != "closed"
                )
            )
        ).all()
    }
    if not circuits:
        return []
    skipped = []
    for run in claimed:
        circuit = circuits.get(run.repo)
        if circuit is None or _may_probe(circuit, run.run_id, now, cooldown_seconds):
            continue
        skipped.append(run)
        await session.execute(
            update(RepoRun)
            .where(RepoRun.id == run.run_id)
            .values(
                status=RunStatus.SKIPPED_CIRCUIT_OPEN,
                attempt=RepoRun.attempt - 1,  # never executed: not an attempt
                finished_at=now,
                owner=None,
                lease_expires_at=None,
                error=(
                    f"circuit open for {run.repo} after {circuit.consecutive_failures} consecutive "
                    f"failures; retry after {cooldown_seconds:g} s"
                ),
            )
        )
    return skipped


def _may_probe(circuit: CircuitState, run_id: str, now: datetime, cooldown_seconds: float) -> bool:
    if circuit.state == "half_open":
        return circuit.probe_run_id == run_id
    if circuit.opened_at is None or (now - circuit.opened_at).total_seconds() < cooldown_seconds:
        return False
    circuit.state, circuit.probe_run_id, circuit.updated_at = "half_open", run_id, now
    return True


# --- record ----------------------------------------------------------------------------


def _attempt_status(result: ProcessResult) -> RunStatus:
    if result.cancelled:
        return RunStatus.CANCELLED
    if result.timed_out:
        return RunStatus.TIMED_OUT
    return RunStatus.SUCCEEDED if result.exit_code == 0 else RunStatus.FAILED


async def record_outcomes(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    *,
    owner: str,
    now: datetime,
    policies: Mapping[str, RetryPolicy],
    backoff: Callable[[RetryPolicy, int], float],
    circuit_threshold: int,
    open_here: Collection[str] = (),
) -> tuple[list[Outcome], list[Closed]]:
    """Write finished attempts: the attempt rows, each run's next state, breakers, dead letters,
    and workflows now complete. Returns the outcomes that ended their run, and closed workflows.
    `open_here`: workflows the caller knows are still open (it holds runs of theirs), not checked."""
    still_ours = set(
        (
            await session.scalars(
                select(RepoRun.id).where(
                    RepoRun.id.in_([o.claimed.run_id for o in outcomes]),
                    RepoRun.owner == owner,
                    RepoRun.status == RunStatus.RUNNING,
                )
            )
        ).all()
    )
    valid = [o for o in outcomes if o.claimed.run_id in still_ours]  # others were healed away meanwhile
    # A run healed away may have been its workflow's last open one elsewhere: check those always.
    lost = {o.claimed.workflow_id for o in outcomes if o.claimed.run_id not in still_ours}
    if not valid:
        return [], await finalize_workflows(session, lost, now)
    attempts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    finals: list[Outcome] = []
    for outcome in valid:
        claimed, result = outcome.claimed, outcome.result
        status = _attempt_status(result)
        if outcome.started:
            attempts.append(
                {
                    "run_id": claimed.run_id,
                    "attempt": claimed.attempt,
                    "status": status.value,
                    "exit_code": result.exit_code,
                    "error": result.error,
                    "started_at": outcome.started_at,
                    "finished_at": now,
                    "duration_seconds": result.duration_seconds,
                }
            )
        policy = policies[claimed.workflow_name]
        retry = (
            status in (RunStatus.FAILED, RunStatus.TIMED_OUT)
            and claimed.attempt < claimed.max_attempts
            and policy.is_retryable(exit_code=result.exit_code, timed_out=result.timed_out)
        )
        outcome.status = RunStatus.QUEUED.value if retry else status.value
        updates.append(
            {
                "rid": claimed.run_id,
                "started": outcome.started_at if outcome.started else None,
                "attempt": claimed.attempt if outcome.started else claimed.attempt - 1,
                "status": outcome.status,
                "exit_code": result.exit_code,
                "output_tail": result.output_tail,
                "error": result.error,
                "duration_seconds": result.duration_seconds,
                "log_path": outcome.log_path if result.log_written else None,
                "finished_at": None if retry else now,
                "next_attempt_at": now + timedelta(seconds=backoff(policy, claimed.attempt))
                if retry
                else None,
            }
        )
        if not retry:
            finals.append(outcome)
    if attempts:
        await session.execute(insert(_ATTEMPTS), attempts)
    await session.execute(
        update(_RUNS)
        .where(_RUNS.c.id == bindparam("rid"))
        .values(
            attempt=bindparam("attempt"),
            started_at=func.coalesce(_RUNS.c.started_at, bindparam("started")),
            status=bindparam("status"),
            exit_code=bindparam("exit_code"),
            output_tail=bindparam("output_tail"),
            error=bindparam("error"),
            duration_seconds=bindparam("duration_seconds"),
            log_path=bindparam("log_path"),
            finished_at=bindparam("finished_at"),
            next_attempt_at=bindparam("next_attempt_at"),
            owner=None,
            lease_expires_at=None,
        ),
        updates,
    )
    await _after_final(session, finals, now, circuit_threshold)
    recorded = {o.claimed.workflow_id for o in valid}
    closed = await finalize_workflows(session, (recorded - set(open_here)) | lost, now)
    return finals, closed


async def _after_final(session: AsyncSession, finals: list[Outcome], now: datetime, threshold: int) -> None:
    """Breakers and dead letters for runs that just ended (cancelled runs touch neither)."""
    judged = [o for o in finals if o.status != RunStatus.CANCELLED]
    failed = [o for o in judged if o.status != RunStatus.SUCCEEDED]
    circuits: dict[str, CircuitState | None] = {}
    if judged:
        query = select(CircuitState).where(CircuitState.repo.in_({o.claimed.repo for o in judged}))
        circuits.update((c.repo, c) for c in (await session.scalars(query)).all())
    for outcome in judged:
        repo = outcome.claimed.repo
        circuits[repo] = _move_circuit(
            session,
            repo,
            circuits.get(repo),
            success=outcome.status == RunStatus.SUCCEEDED,
            threshold=threshold,
            now=now,
        )
    for outcome in failed:
        await _file_dead_letter(session, outcome, now)
    resolved = [o.claimed.run_id for o in judged if o.status == RunStatus.SUCCEEDED and o.claimed.dlq_retry]
    if resolved:
        await session.execute(
            update(DeadLetter)
            .where(DeadLetter.run_id.in_(resolved), DeadLetter.status == "retrying")
            .values(
                status="resolved",
                updated_at=now,
                attempts=select(RepoRun.attempt).where(RepoRun.id == DeadLetter.run_id).scalar_subquery(),
            )
        )
    reopened = [o.claimed.run_id for o in finals if o.status == RunStatus.CANCELLED and o.claimed.dlq_retry]
    if reopened:
        await reopen_dead_letters(session, reopened, now)


def _move_circuit(
    session: AsyncSession,
    repo: str,
    current: CircuitState | None,
    *,
    success: bool,
    threshold: int,
    now: datetime,
) -> CircuitState | None:
    """A repository's breaker after a run's final outcome."""
    if success:
        if current is not None and (current.state != "closed" or current.consecutive_failures):
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


async def _file_dead_letter(session: AsyncSession, outcome: Outcome, now: datetime) -> None:
    """Reopen the run's entry if this was a DLQ retry, else file a new one."""
    claimed, error = outcome.claimed, outcome.result.error
    existing = await session.scalar(
        select(DeadLetter).where(DeadLetter.run_id == claimed.run_id, DeadLetter.status != "resolved")
    )
    if existing is not None:
        existing.status, existing.last_error, existing.attempts, existing.updated_at = (
            "open",
            error,
            claimed.attempt,
            now,
        )
        return
    session.add(
        DeadLetter(
            id=new_id(),
            run_id=claimed.run_id,
            workflow_id=claimed.workflow_id,
            workflow_name=claimed.workflow_name,
            repo=claimed.repo,
            inputs={"argv": claimed.argv, "repo_path": claimed.repo_path},
            last_error=error,
            attempts=claimed.attempt,
            retries=0,
            status="open",
            created_at=now,
            updated_at=now,
        )
    )


async def reopen_dead_letters(session: AsyncSession, run_ids: Collection[str], now: datetime) -> None:
    """A DLQ retry that was cancelled goes back to `open`, so it can be retried again or purged."""
    await session.execute(
        update(DeadLetter)
        .where(DeadLetter.run_id.in_(run_ids), DeadLetter.status == "retrying")
        .values(status="open", updated_at=now)
    )


async def finalize_workflows(
    session: AsyncSession, workflow_ids: Collection[str], now: datetime
) -> list[Closed]:
    """Close every workflow among `workflow_ids` whose runs are all final."""
    if not workflow_ids:
        return []
    still_open = set(
        (
            await session.scalars(
                select(RepoRun.workflow_id)
                .where(RepoRun.workflow_id.in_(workflow_ids), RepoRun.status.in_(_ACTIVE))
                .distinct()
            )
        ).all()
    )
    done = [w for w in workflow_ids if w not in still_open]
    if not done:
        return []
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
    closed = [
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
    flows = _WORKFLOWS.c
    won = []
    for workflow in closed:  # one at a time, rarely more than one: each close counted exactly once
        result = await session.execute(
            update(_WORKFLOWS)
            .where(flows.id == workflow.id, flows.finished_at.is_(None))
            .values(status=workflow.status, finished_at=now)
        )
        if cast(CursorResult[Any], result).rowcount == 1:  # else a concurrent transaction closed it
            won.append(workflow)
    return won


async def close_settled_workflows(session: AsyncSession, now: datetime) -> list[Closed]:
    """Close open workflows none of whose runs is queued or running any more.

    Every path that ends a run checks its workflow at once; this sweep catches the rare close
    that two transactions racing each other both missed (a cancel and a record committing at
    the same moment, each seeing the other's run still active)."""
    active = select(RepoRun.id).where(RepoRun.workflow_id == Workflow.id, RepoRun.status.in_(_ACTIVE))
    # `status` narrows it to open workflows by its index (`finished_at` has none).
    open_statuses = (WorkflowStatus.QUEUED, WorkflowStatus.RUNNING)
    unfinished = Workflow.status.in_(open_statuses) & Workflow.finished_at.is_(None)
    settled = await session.scalars(select(Workflow.id).where(unfinished, ~active.exists()))
    return await finalize_workflows(session, set(settled.all()), now)


# --- leases, healing, release ------------------------------------------------------------


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


async def cancelled_among(session: AsyncSession, workflow_ids: Collection[str]) -> set[str]:
    if not workflow_ids:
        return set()
    rows = await session.scalars(
        select(Workflow.id).where(Workflow.id.in_(workflow_ids), Workflow.cancel_requested.is_(True))
    )
    return set(rows.all())


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


# --- reading ---------------------------------------------------------------------------------


async def gauges(session: AsyncSession) -> Gauges:
    queued = await session.scalar(select(func.count()).where(RepoRun.status == RunStatus.QUEUED))
    dead = await session.scalar(select(func.count()).where(DeadLetter.status != "resolved"))
    circuits = await session.scalar(select(func.count()).where(CircuitState.state != "closed"))
    return Gauges(int(queued or 0), int(dead or 0), int(circuits or 0))
