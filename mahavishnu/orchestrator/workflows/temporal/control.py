"""The activities that read and write Mahavishnu's database, served by the Mahavishnu replicas
(`PREFIX-control`): claim runs into batches, record finished batches, settle what a workflow
left. They reuse the local engine's queue and every engine's recording (`outcomes.py`), so the
tables, retries, breakers and dead letters mean the same whichever engine ran a workflow.

Every write is idempotent on (run, attempt): an activity Temporal delivers twice finds the run
moved on (`outcomes.record_outcomes`) and records nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from mahavishnu.orchestrator.workflows import outcomes
from mahavishnu.orchestrator.workflows.decisions import AttemptResult
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy, WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import queue
from mahavishnu.orchestrator.workflows.local.closes import Closes
from mahavishnu.orchestrator.workflows.models import Attempt, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.records import Claimed, Closed, Outcome, finalize_workflows
from mahavishnu.orchestrator.workflows.states import RunStatus
from mahavishnu.orchestrator.workflows.temporal.config import TemporalConfig
from mahavishnu.orchestrator.workflows.temporal.wire import (
    Batch,
    Began,
    ClaimRequest,
    Plan,
    Recorded,
    Results,
    RunDone,
    Settle,
    pack_runs,
    unpack_done,
    unpack_runs,
)
from mahavishnu.orchestrator.workflows.temporal.workflow import CLAIM, MARK_STARTED, RECORD, SETTLE
from mahavishnu.platform.db import Database

__all__ = ["ControlActivities", "owner_of"]

LEASE = timedelta(days=7)
"""Temporal watches the runs it executes (heartbeats, retries): the lease only keeps a local
engine on the same database from healing them."""
LONGEST_WAIT_SECONDS = 300.0
"""A workflow waiting for a retry's backoff looks again at least this often."""


def owner_of(workflow_id: str) -> str:
    """The owner its runs are claimed under: the same in every incarnation of its workflow."""
    return f"temporal:{workflow_id}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ControlActivities:
    def __init__(
        self,
        db: Database,
        config: TemporalConfig,
        definitions: Mapping[str, WorkflowDefinition],
        closes: Closes,
        *,
        circuit_threshold: int,
        circuit_cooldown_seconds: float,
        host_of: Callable[[str], str | None],
    ) -> None:
        self._db = db
        self._config = config
        self._definitions = definitions
        self._closes = closes
        self._threshold = circuit_threshold
        self._cooldown = circuit_cooldown_seconds
        self._host_of = host_of

    def activities(self) -> list[Callable[..., object]]:
        return [self.claim, self.record, self.settle, self.mark_started]

    @activity.defn(name=MARK_STARTED)
    async def mark_started(self, began: list[Began]) -> None:
        """Runs their batches started: shown running from that moment (`queue.mark_started`)."""
        async with self._db.session() as session:
            await queue.mark_started(session, [(b.run_id, datetime.fromtimestamp(b.at, UTC)) for b in began])

    @activity.defn(name=CLAIM)
    async def claim(self, request: ClaimRequest) -> Plan:
        """Claim what `request.room` more batches can hold (the workflow's own `max_concurrency`
        caps the batches in flight: each runs one run at a time), spread over as many batches as
        that allows; with none, say whether it closed or how long until a retry is due."""
        now = utcnow()
        async with self._db.session() as session:
            name = await session.scalar(select(Workflow.name).where(Workflow.id == request.workflow_id))
            room = self._room(name, request)
            claims = None
            if room > 0:
                claims = await queue.claim_runs(
                    session,
                    owner=owner_of(request.workflow_id),
                    now=now,
                    lease_until=now + LEASE,
                    limit=room * self._config.batch_size,
                    only=[request.workflow_id],
                    cooldown_seconds=self._cooldown,
                )
            status, closed, wait = await _state(session, request.workflow_id, now)
        if claims is not None:
            self._closes.skipped(claims.skipped)
            self._closes.closed(claims.closed)
        runs = claims.runs if claims is not None else []
        batches = self._batches(runs, room)
        exhausted = claims is not None and claims.exhausted
        return Plan(
            batches, closed and not runs, status, wait, full=len(batches) >= room, exhausted=exhausted
        )

    def _room(self, name: str | None, request: ClaimRequest) -> int:
        definition = self._definitions.get(name) if name is not None else None
        cap = self._config.max_batches
        if definition is not None and definition.max_concurrency:
            cap = min(cap, definition.max_concurrency)
        return cap - request.in_flight

    def _batches(self, runs: Sequence[Claimed], room: int) -> list[Batch]:
        """Few runs go one per batch (in parallel); many fill `room` batches of up to
        `batch_size` (a batch pays Temporal's overhead once)."""
        if not runs:
            return []
        size = -(-len(runs) // room)
        by_host: dict[str | None, list[Claimed]] = {}
        for run in runs:
            by_host.setdefault(self._host_of(run.repo), []).append(run)
        return [
            Batch(host, pack_runs(todo[start : start + size]))
            for host, todo in by_host.items()
            for start in range(0, len(todo), size)
        ]

    @activity.defn(name=RECORD)
    async def record(self, results: Results) -> Recorded:
        """Record finished batches: lost attempts first, then every outcome (`record_outcomes`)."""
        done = [d for item in results.items for d in unpack_done(item.done)]
        lost = [run for item in results.items for run in unpack_runs(item.lost)]
        if not done and not lost:
            return Recorded(requeued=False, closed=None)
        now = utcnow()
        finished = [_outcome(d) for d in done]
        workflow_id = (done[0].run if done else lost[0]).workflow_id
        async with self._db.session() as session:
            await _record_lost(session, lost, now)
            finals, closed = await outcomes.record_outcomes(
                session,
                finished,
                owner=owner_of(workflow_id),
                now=now,
                policies={o.claimed.workflow_name: self._policy(o.claimed.workflow_name) for o in finished},
                circuit_threshold=self._threshold,
            )
        self._closes.runs_finished(finals)
        self._closes.closed(closed)
        requeued = any(o.status == RunStatus.QUEUED for o in finished)
        return Recorded(requeued, next((c.status for c in closed if c.id == workflow_id), None))

    @activity.defn(name=SETTLE)
    async def settle(self, settle: Settle) -> None:
        """Runs still marked running under the workflow, which executes none now: requeued (the
        lost attempt recorded) or, if it was cancelled, closed; then the workflow is closed if
        nothing is left."""
        now = utcnow()
        async with self._db.session() as session:
            _healed, closed = await queue.heal_owned(session, owner_of(settle.workflow_id), now=now)
            closed += await finalize_workflows(session, [settle.workflow_id], now)
        self._closes.closed(_unique(closed))

    def _policy(self, workflow_name: str) -> RetryPolicy:
        definition = self._definitions.get(workflow_name)
        return definition.retry if definition else RetryPolicy()


async def _state(session: AsyncSession, workflow_id: str, now: datetime) -> tuple[str, bool, float | None]:
    """The workflow's status, whether it closed, and how long until its next queued run is due."""
    row = (
        await session.execute(select(Workflow.status, Workflow.finished_at).where(Workflow.id == workflow_id))
    ).one_or_none()
    if row is None:
        return "missing", True, 0.0
    due = await session.scalar(
        select(func.min(RepoRun.next_attempt_at)).where(
            RepoRun.workflow_id == workflow_id, RepoRun.status == RunStatus.QUEUED
        )
    )
    if due is None:
        queued = await session.scalar(
            select(func.count()).where(RepoRun.workflow_id == workflow_id, RepoRun.status == RunStatus.QUEUED)
        )
        return row.status, row.finished_at is not None, 0.0 if queued else None
    wait = (_aware(due) - now).total_seconds()
    return row.status, row.finished_at is not None, min(max(wait, 0.0), LONGEST_WAIT_SECONDS)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _record_lost(session: AsyncSession, lost: Sequence[Claimed], now: datetime) -> None:
    """Attempts a dead worker left begun: recorded as lost, and the run moves to its next
    attempt (a lost attempt costs no retry), which the same batch then executed."""
    for run in lost:
        moved = await session.execute(
            update(RepoRun)
            .where(
                RepoRun.id == run.run_id,
                RepoRun.owner == owner_of(run.workflow_id),
                RepoRun.status == RunStatus.RUNNING,
                RepoRun.attempt == run.attempt,
            )
            .values(
                attempt=run.attempt + 1,
                max_attempts=case(
                    (RepoRun.max_attempts > run.attempt, RepoRun.max_attempts), else_=run.attempt + 1
                ),
            )
        )
        if moved.rowcount:  # type: ignore[attr-defined]
            session.add(
                Attempt(
                    run_id=run.run_id,
                    attempt=run.attempt,
                    status="lost",
                    exit_code=None,
                    error="its worker stopped during the attempt",
                    started_at=now,
                    finished_at=now,
                    duration_seconds=0.0,
                )
            )
    await session.flush()


def _unique(closed: Sequence[Closed]) -> list[Closed]:
    return list({c.id: c for c in closed}.values())


def _outcome(done: RunDone) -> Outcome:
    result = AttemptResult(
        done.exit_code,
        done.timed_out,
        done.cancelled,
        done.duration_seconds,
        done.output_tail,
        done.output_bytes,
        done.error,
        done.log_written,
    )
    started_at = datetime.fromtimestamp(done.started_at, UTC)
    return Outcome(done.run, result, started_at, done.log_path, started=done.started)
