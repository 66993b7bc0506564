"""The local engine: runs queued repo runs as subprocesses, durably, with limits and resilience.

Three loops share one asyncio task group:

- **dispatch** claims queued runs from the database (atomically, so several
  engines can share one database) up to the global and per-workflow limits,
  applies each repository's circuit breaker, and starts the survivors;
- **record** writes finished attempts back in batches: the attempt row, the
  next status (succeeded, retry after backoff, or final failure into the
  dead-letter queue), the breaker, and any workflow that is now complete;
- **maintain** renews this engine's leases, heals runs orphaned by a dead
  engine (requeue or fail, per settings), relays cancellations made
  elsewhere, and refreshes the queue/DLQ/breaker gauges.

Delivery is at least once: a run whose engine died mid-attempt runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tenacity
from opentelemetry import trace
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import store
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy, WorkflowDefinition
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.models import Attempt, CircuitState, Instance, RepoRun
from mahavishnu.orchestrator.workflows.process import ProcessResult, run_process
from mahavishnu.orchestrator.workflows.states import RunStatus
from mahavishnu.platform.db import Database
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import get_logger

__all__ = ["EngineConfig", "LocalEngine"]

log = get_logger("mahavishnu.engine")
tracer = trace.get_tracer("mahavishnu.engine")
_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_BATCH = 256


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's knobs, taken from settings once."""

    max_concurrent_runs: int
    kill_grace_seconds: float
    output_tail_bytes: int
    log_max_bytes: int
    log_dir: Path
    circuit_failure_threshold: int
    circuit_cooldown_seconds: float
    heal_policy: str
    lease_seconds: float
    poll_seconds: float


@dataclass(frozen=True, slots=True)
class _Finished:
    run: RepoRun
    result: ProcessResult
    started_at: datetime


class LocalEngine:
    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        definitions: Mapping[str, WorkflowDefinition],
        metrics: WorkflowMetrics,
    ) -> None:
        self._db = db
        self._config = config
        self._definitions = definitions
        self._metrics = metrics
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self._wakeup = asyncio.Event()
        self._finished: asyncio.Queue[_Finished] = asyncio.Queue()
        self._running: dict[str, RepoRun] = {}
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = time.time()

    # --- public -------------------------------------------------------------
    def wake(self) -> None:
        """New work was queued: look now rather than at the next poll."""
        self._wakeup.set()

    def cancel_local(self, run_ids: list[str] | None = None, workflow_id: str | None = None) -> int:
        """Stop this engine's running runs (by id or by workflow); returns how many were signalled."""
        hit = 0
        for run_id, run in list(self._running.items()):
            if (run_ids and run_id in run_ids) or (workflow_id and run.workflow_id == workflow_id):
                event = self._cancel_events.get(run_id)
                if event is not None and not event.is_set():
                    event.set()
                    hit += 1
        return hit

    async def heal(self) -> int:
        """Requeue (or fail) runs whose engine died; returns how many were healed."""
        now = utcnow()
        hostname = socket.gethostname()
        async with self._db.session() as session:
            dead = [
                i.id
                for i in await store.instances_on(session, hostname)
                if i.id != self.instance_id and not _pid_alive(i.pid)
            ]
            orphans = await store.orphaned_runs(session, now=now, dead_owners=dead)
            orphans = [r for r in orphans if r.id not in self._running]
            for run in orphans:
                await store.add_attempt(
                    session,
                    Attempt(
                        run_id=run.id,
                        attempt=run.attempt,
                        status="lost",
                        exit_code=None,
                        error=f"engine {run.owner} stopped during the attempt",
                        started_at=run.started_at or now,
                        finished_at=now,
                        duration_seconds=0.0,
                    ),
                )
                run.owner, run.lease_expires_at = None, None
                if self._config.heal_policy == "requeue":
                    run.status, run.next_attempt_at = RunStatus.QUEUED, None
                    run.max_attempts = max(run.max_attempts, run.attempt + 1)
                else:
                    run.status, run.finished_at = RunStatus.FAILED, now
                    run.error = "its engine stopped during the attempt (heal policy: fail)"
            await store.forget_instances(session, dead)
            closed = await store.finalize_workflows(session, {r.workflow_id for r in orphans}, now)
        for workflow in closed:
            self._metrics.workflows.labels(workflow.name, workflow.status).inc()
        if orphans:
            log.warning("runs_healed", count=len(orphans), policy=self._config.heal_policy, dead_engines=dead)
            self.wake()
        return len(orphans)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LocalEngine]:
        """Run the engine's loops for the duration of the block; stop its processes on exit."""
        await self._register()
        await self.heal()
        loops = [
            asyncio.create_task(self._dispatch_loop(), name="engine-dispatch"),
            asyncio.create_task(self._record_loop(), name="engine-record"),
            asyncio.create_task(self._maintain_loop(), name="engine-maintain"),
        ]
        try:
            yield self
        finally:
            loops[0].cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._drain_finished()
            for task in loops[1:]:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._release_unfinished()

    # --- dispatch -----------------------------------------------------------
    async def _register(self) -> None:
        now = utcnow()
        instance = Instance(
            id=self.instance_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
        )
        async with self._db.session() as session:
            await store.heartbeat(session, instance, now)

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._config.poll_seconds)
            self._wakeup.clear()
            try:
                while await self._dispatch_once():
                    pass
            except Exception:
                log.exception("dispatch_failed")
                await asyncio.sleep(self._config.poll_seconds)

    async def _dispatch_once(self) -> bool:
        """Claim and start what fits; True when capacity was filled (there may be more)."""
        capacity = self._config.max_concurrent_runs - len(self._running)
        if capacity <= 0:
            return False
        limits = {n: d.max_concurrency for n, d in self._definitions.items() if d.max_concurrency}
        active: dict[str, int] = {}
        for run in self._running.values():
            active[run.workflow_id] = active.get(run.workflow_id, 0) + 1
        room = {wid: limits.get(self._running_name(wid), capacity) - n for wid, n in active.items()}
        now = utcnow()
        async with self._db.session() as session:
            runs = await store.claim_runs(
                session,
                owner=self.instance_id,
                now=now,
                lease_until=now + timedelta(seconds=self._config.lease_seconds),
                capacity=capacity,
                per_workflow_room=room,
                limits=limits,
            )
            skipped = await self._apply_breakers(session, runs, now)
            if skipped:
                await store.finalize_workflows(session, {r.workflow_id for r in skipped}, now)
        for run in skipped:
            self._metrics.repo_runs.labels(run.workflow_name, run.status).inc()
        for run in runs:
            if run in skipped:
                continue
            self._running[run.id] = run
            self._cancel_events[run.id] = asyncio.Event()
            task = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._metrics.active_runs.set(len(self._running))
        return len(runs) == capacity

    def _running_name(self, workflow_id: str) -> str:
        return next((r.workflow_name for r in self._running.values() if r.workflow_id == workflow_id), "")

    async def _apply_breakers(
        self, session: AsyncSession, runs: list[RepoRun], now: datetime
    ) -> list[RepoRun]:
        """Skip runs whose repository's breaker is open; let one probe through once it cools down."""
        circuits = await store.circuits_for(session, {r.repo for r in runs})
        skipped: list[RepoRun] = []
        for run in runs:
            circuit = circuits.get(run.repo)
            if circuit is None or circuit.state == "closed" or self._may_probe(circuit, run, now):
                continue
            run.status, run.finished_at, run.owner = RunStatus.SKIPPED_CIRCUIT_OPEN, now, None
            run.error = (
                f"circuit open for {run.repo} after {circuit.consecutive_failures} consecutive failures; "
                f"retry after {self._config.circuit_cooldown_seconds:g} s"
            )
            skipped.append(run)
        return skipped

    def _may_probe(self, circuit: CircuitState, run: RepoRun, now: datetime) -> bool:
        if circuit.state == "half_open":
            return circuit.probe_run_id == run.id
        opened = circuit.opened_at
        if opened is None or (now - opened).total_seconds() < self._config.circuit_cooldown_seconds:
            return False
        circuit.state, circuit.probe_run_id, circuit.updated_at = "half_open", run.id, now
        return True

    # --- execute ------------------------------------------------------------
    async def _execute(self, run: RepoRun) -> None:
        definition = self._definitions.get(run.workflow_name)
        timeout = definition.timeout_seconds if definition else 600.0
        started_at = utcnow()
        with tracer.start_as_current_span(f"repo_run {run.workflow_name}") as span:
            span.set_attributes(
                {
                    "mahavishnu.workflow_id": run.workflow_id,
                    "mahavishnu.repo": run.repo,
                    "mahavishnu.attempt": run.attempt,
                }
            )
            try:
                result = await run_process(
                    run.argv,
                    cwd=Path(run.repo_path),
                    env=_environment(definition),
                    timeout_seconds=timeout,
                    kill_grace=self._config.kill_grace_seconds,
                    tail_bytes=self._config.output_tail_bytes,
                    log_path=self._config.log_dir / run.workflow_id / f"{run.id}.{run.attempt}.log",
                    log_max_bytes=self._config.log_max_bytes,
                    cancel=self._cancel_events.get(run.id),
                )
            except Exception as exc:  # a bad folder, a full disk: the run fails, the engine goes on
                log.exception("run_crashed", run_id=run.id, workflow_id=run.workflow_id)
                result = ProcessResult(None, False, False, 0.0, "", 0, f"could not run: {type(exc).__name__}")
            span.set_attribute("process.exit_code", result.exit_code if result.exit_code is not None else -1)
        self._running.pop(run.id, None)
        self._metrics.active_runs.set(len(self._running))
        self._metrics.run_duration.labels(run.workflow_name).observe(result.duration_seconds)
        self._finished.put_nowait(_Finished(run, result, started_at))
        self.wake()

    # --- record -------------------------------------------------------------
    async def _record_loop(self) -> None:
        while True:
            batch = [await self._finished.get()]
            while not self._finished.empty() and len(batch) < _BATCH:
                batch.append(self._finished.get_nowait())
            await self._record(batch)

    async def _drain_finished(self) -> None:
        batch: list[_Finished] = []
        while not self._finished.empty():
            batch.append(self._finished.get_nowait())
        if batch:
            await self._record(batch)

    async def _record(self, batch: list[_Finished]) -> None:
        now = utcnow()
        for attempt in range(5):
            try:
                async with self._db.session() as session:
                    finals = await self._record_in(session, batch, now)
                    closed = await store.finalize_workflows(session, {f.run.workflow_id for f in batch}, now)
                break
            except Exception:
                log.exception("record_failed", attempt=attempt + 1, runs=len(batch))
                await asyncio.sleep(min(2**attempt, 10))
        else:
            return  # the runs stay `running` under our lease; healing will pick them up
        for run in finals:
            self._metrics.repo_runs.labels(run.workflow_name, run.status).inc()
            log.info(
                "repo_run_finished",
                workflow_id=run.workflow_id,
                workflow=run.workflow_name,
                repo=run.repo,
                status=run.status,
                attempt=run.attempt,
                exit_code=run.exit_code,
            )
        for workflow in closed:
            self._metrics.workflows.labels(workflow.name, workflow.status).inc()
            log.info(
                "workflow_finished", workflow_id=workflow.id, workflow=workflow.name, status=workflow.status
            )

    async def _record_in(self, session: AsyncSession, batch: list[_Finished], now: datetime) -> list[RepoRun]:
        runs = {
            r.id: r
            for r in (
                await session.scalars(select(RepoRun).where(RepoRun.id.in_([f.run.id for f in batch])))
            ).all()
        }
        circuits = await store.circuits_for(session, {f.run.repo for f in batch})
        finals: list[RepoRun] = []
        for finished in batch:
            run = runs.get(finished.run.id)
            if run is None or run.owner != self.instance_id:
                continue  # healed away meanwhile: its new owner reports it
            result = finished.result
            status = _attempt_status(result)
            await store.add_attempt(
                session,
                Attempt(
                    run_id=run.id,
                    attempt=run.attempt,
                    status=status,
                    exit_code=result.exit_code,
                    error=result.error,
                    started_at=finished.started_at,
                    finished_at=now,
                    duration_seconds=result.duration_seconds,
                ),
            )
            run.exit_code, run.output_tail, run.error = result.exit_code, result.output_tail, result.error
            run.duration_seconds = result.duration_seconds
            run.log_path = str(self._config.log_dir / run.workflow_id / f"{run.id}.{run.attempt}.log")
            run.owner, run.lease_expires_at = None, None
            policy = self._policy(run.workflow_name)
            if status == RunStatus.SUCCEEDED or status == RunStatus.CANCELLED:
                run.status, run.finished_at = status, now
            elif run.attempt < run.max_attempts and policy.is_retryable(
                exit_code=result.exit_code, timed_out=result.timed_out
            ):
                run.status = RunStatus.QUEUED
                run.next_attempt_at = now + timedelta(seconds=_backoff(policy, run.attempt))
                continue
            else:
                run.status, run.finished_at = status, now
            finals.append(run)
            if status == RunStatus.CANCELLED:
                continue
            success = status == RunStatus.SUCCEEDED
            circuits[run.repo] = (
                await store.record_circuit(
                    session,
                    run.repo,
                    success=success,
                    threshold=self._config.circuit_failure_threshold,
                    now=now,
                    current=circuits.get(run.repo),
                )
                or circuits.get(run.repo)  # type: ignore[assignment]
            )
            if success:
                await store.resolve_dead_letter(session, run.id, now)
            else:
                await store.file_dead_letter(
                    session, run, now=now, inputs={"argv": run.argv, "repo_path": run.repo_path}
                )
        return finals

    def _policy(self, workflow_name: str) -> RetryPolicy:
        definition = self._definitions.get(workflow_name)
        return definition.retry if definition else RetryPolicy()

    # --- maintain -----------------------------------------------------------
    async def _maintain_loop(self) -> None:
        interval = max(0.2, self._config.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain()
            except Exception:
                log.exception("maintenance_failed")

    async def _maintain(self) -> None:
        now = utcnow()
        instance = Instance(
            id=self.instance_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=datetime.fromtimestamp(self._started, UTC),
            heartbeat_at=now,
        )
        async with self._db.session() as session:
            await store.heartbeat(session, instance, now)
            await store.renew_leases(
                session,
                run_ids=list(self._running),
                lease_until=now + timedelta(seconds=self._config.lease_seconds),
            )
            cancelled = await store.cancelled_among(session, {r.workflow_id for r in self._running.values()})
            queued = await store.count_queued(session)
            dead_letters = await store.count_open_dead_letters(session)
            circuits = await store.count_open_circuits(session)
        for workflow_id in cancelled:
            self.cancel_local(workflow_id=workflow_id)
        self._metrics.queue_depth.set(queued)
        self._metrics.dead_letters.set(dead_letters)
        self._metrics.circuit_open.set(circuits)
        await self.heal()

    async def _release_unfinished(self) -> None:
        """On a clean stop, hand back runs that never finished so another engine takes them at once."""
        if not self._running:
            return
        try:
            async with self._db.session() as session:
                await session.execute(
                    update(RepoRun)
                    .where(RepoRun.owner == self.instance_id, RepoRun.status == RunStatus.RUNNING)
                    .values(status=RunStatus.QUEUED, owner=None, lease_expires_at=None)
                )
        except Exception:
            log.exception("release_failed")


def _attempt_status(result: ProcessResult) -> RunStatus:
    if result.cancelled:
        return RunStatus.CANCELLED
    if result.timed_out:
        return RunStatus.TIMED_OUT
    return RunStatus.SUCCEEDED if result.exit_code == 0 else RunStatus.FAILED


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: tenacity's exponential backoff with jitter."""
    wait = tenacity.wait_exponential_jitter(
        multiplier=policy.initial_backoff_seconds,
        max=policy.max_backoff_seconds,
        exp_base=policy.multiplier,
        jitter=policy.jitter_seconds,
    )
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


def _environment(definition: WorkflowDefinition | None) -> dict[str, str]:
    allowed = (*_BASE_ENV, *(definition.env_allowlist if definition else ()))
    return {name: os.environ[name] for name in allowed if name in os.environ}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
