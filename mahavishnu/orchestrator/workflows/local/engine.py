"""The local engine: runs queued repo runs as subprocesses, durably, with limits and resilience.

- **Worker threads** (`max_concurrent_runs` of them, see `workers.py`) take
  the runs this engine has claimed, respecting each workflow's own
  concurrency limit, and execute them start to finish (see `attempts.py`
  and `process.py`);
  a freed slot starts the next claimed run at once, without the event loop
  or the database in between.
- One **cycle** loop owns the database: in one transaction it records the
  attempts that finished (the next status: succeeded, retry after backoff,
  or final failure into the dead-letter queue; the circuit breaker; any
  workflow now complete) and claims more queued runs, atomically, so several
  engines can share one database. It applies each repository's breaker to
  what it claims. Cycles work in batches: the database's CPU competes with
  the runs themselves, so a cycle comes when the local queue runs low, when
  a batch of outcomes is waiting, at the tail of the work, or after
  `_RECORD_DELAY` at most while runs execute; never once per run.
- A slower **maintain** loop renews leases, heals runs orphaned by a dead
  engine, relays cancellations made elsewhere and refreshes the gauges.

Delivery is at least once: a run whose engine died mid-attempt runs again, but
never beside its lost attempt. Each process group is written down as it starts
(`groups.GroupGuard`, a ledger file per engine), and a reaper process kills the
groups when the engine dies; healing kills what a dead engine of this host left
running (its reaper died too) before it requeues that engine's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import outcomes, records
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy, WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import attempts, queue
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard
from mahavishnu.orchestrator.workflows.local.process import Cancellation
from mahavishnu.orchestrator.workflows.local.workers import RunQueue, WorkerThreads
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.models import Instance
from mahavishnu.orchestrator.workflows.records import Claimed, Closed, Outcome
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus
from mahavishnu.platform.db import Database
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import get_logger, trace_context

__all__ = ["EngineConfig", "LocalEngine"]

log = get_logger("mahavishnu.engine")
tracer = trace.get_tracer("mahavishnu.engine")
_T = TypeVar("_T")
_PREFETCH = 32
"""Claimed runs held locally per worker, so a freed slot never waits for the database."""
_RECORD_DELAY = 0.5
"""Longest an outcome waits to be recorded while runs execute (status and progress lag by this)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self._limits = {n: d.max_concurrency for n, d in definitions.items() if d.max_concurrency}
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by worker threads, drained by the cycle. Never swapped for a new object: a
        # thread may hold the old one between reading the attribute and appending to it.
        self._finished: deque[Outcome] = deque()
        self._began: deque[tuple[str, datetime]] = deque()
        self._queue = RunQueue(self._limits)
        held = config.max_concurrent_runs * _PREFETCH
        self._low_water = held // 4
        """Claim more when this few runs wait locally (enough for the next claim to arrive)."""
        self._record_batch = held // 2
        """Record at once when this many outcomes wait."""
        self._drained = False
        """The last claim found less than it asked for: no need to ask again until new work comes."""
        self._only: frozenset[str] | None = None
        self._started = time.time()
        self._closing: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        self._guard: GroupGuard | None = None
        self._groups_dir = config.groups_dir or config.log_dir.parent / "engines"

    # --- public -------------------------------------------------------------
    def submit(self, workflow_id: str) -> None:
        """`WorkflowEngine.submit`: its runs are in the queue every engine claims from, so this
        engine only has to look sooner than its next poll."""
        self.wake()

    def cancel(self, workflow_id: str) -> None:
        """`WorkflowEngine.cancel`: stop this engine's runs of the workflow, waiting or executing
        (other engines see the cancel at their next maintain)."""
        self.cancel_local(workflow_id=workflow_id)

    def wake(self) -> None:
        """New work was queued: run a cycle now rather than at the next poll."""
        self._drained = False
        self._wakeup.set()

    def cancel_local(self, run_ids: Collection[str] = (), workflow_id: str | None = None) -> int:
        """Stop this engine's runs (by id or by workflow), waiting or executing; returns how many."""
        return self._queue.cancel(lambda run: run.run_id in run_ids or run.workflow_id == workflow_id)

    async def until_closed(self, workflow_id: str) -> None:
        """Return once this engine closes the workflow.

        A close that came earlier, or from another engine, never wakes this: bound the wait
        and read the status, which is the truth either way.
        """
        event = self._closing.get(workflow_id)
        if event is None:
            event = self._closing[workflow_id] = asyncio.Event()
        await event.wait()

    async def heal(self) -> int:
        """Requeue (or fail) runs whose engine died; returns how many were healed.

        Between finding the dead engines of this host and requeueing their runs, the process
        groups that dead engines left running are killed and waited for (a requeued run must not
        start beside its lost attempt); no transaction stays open meanwhile.
        """
        hostname = socket.gethostname()
        async with self._db.session() as session:
            dead = [
                i.id
                for i in await queue.instances_on(session, hostname)
                if i.id != self.instance_id and not _pid_alive(i.pid)
            ]
        # Every engine in `dead` had died: its ledger is reaped.
        skip = self._guard.path if self._guard is not None else None
        await asyncio.to_thread(attempts.kill_orphaned_groups, self._groups_dir, skip=skip)
        async with self._db.session() as session:
            healed, closed = await queue.heal_orphans(
                session,
                now=utcnow(),
                dead_owners=dead,
                keep={run.run_id for run in self._queue.held()},
                requeue=self._config.heal_policy == "requeue",
            )
            await queue.forget_instances(session, dead)
        self.report_closed(closed)
        if healed:
            log.warning("runs_healed", count=healed, policy=self._config.heal_policy, dead_engines=dead)
            self.wake()
        return healed

    @contextlib.asynccontextmanager
    async def running(self, workflows: Collection[str] | None = None) -> AsyncIterator[LocalEngine]:
        """Run the engine for the duration of the block; `workflows` limits it to those ids (the CLI).

        On exit the processes still running are stopped and their runs handed back (requeued).
        """
        self._only = frozenset(workflows) if workflows is not None else None
        self._loop = asyncio.get_running_loop()
        self._queue = RunQueue(self._limits)
        name, slots = self.instance_id.replace(":", "_"), self._config.max_concurrent_runs
        self._guard = await asyncio.to_thread(attempts.start_guard, self._groups_dir, name, slots)
        try:
            await self._register()
            await self.heal()
        except BaseException:
            await self._close_guard()
            raise
        threads = WorkerThreads(self._config.max_concurrent_runs, self._queue, self._execute)
        cycle = asyncio.create_task(self._cycle_loop(), name="engine-cycle")
        maintain = asyncio.create_task(self._maintain_loop(), name="engine-maintain")
        try:
            yield self
        finally:
            maintain.cancel()
            cycle.cancel()
            await asyncio.gather(maintain, cycle, return_exceptions=True)
            interrupted = self._queue.executing_ids()
            self._queue.close()
            self._queue.cancel(lambda run: True)  # stop the process groups; their threads then return
            await asyncio.to_thread(threads.join, self._config.kill_grace_seconds + 5)
            await self._close_guard()  # kills any group a stuck thread still runs, before the hand-back
            # Runs stopped by this shutdown are handed back, not recorded as cancelled.
            await self._flush(skip=interrupted)
            await self._release(interrupted)

    # --- worker threads --------------------------------------------------------------
    def _execute(self, claimed: Claimed, cancel: Cancellation, slot: int) -> None:
        """One attempt, in worker thread `slot` (`attempts.execute`); the outcome goes to the next
        cycle, woken only when the queue runs low, outcomes pile up, or the work ends."""
        outcome = attempts.execute(
            claimed,
            cancel,
            slot=slot,
            config=self._config,
            definition=self._definitions.get(claimed.workflow_name),
            metrics=self._metrics,
            guard=self._guard,
            began=lambda run_id, at: self._began.append((run_id, at)),
        )
        self._finished.append(outcome)
        waiting = self._queue.sizes()[0]
        if self._loop is not None and (
            waiting == 0  # the tail: record now, so the workflow closes without delay
            or (waiting <= self._low_water and not self._drained)
            or len(self._finished) >= self._record_batch
        ):
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def _close_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            await asyncio.to_thread(guard.close)

    # --- the database cycle -----------------------------------------------------
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
            await queue.heartbeat(session, instance, now)

    async def _cycle_loop(self) -> None:
        failures = 0
        while True:
            busy = self._finished or any(self._queue.sizes())
            timeout = min(_RECORD_DELAY, self._config.poll_seconds) if busy else self._config.poll_seconds
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the wake-up is set, and the engine's stop then waits for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._cycle()
                failures = 0
            except Exception:
                failures += 1
                log.exception("engine_cycle_failed", consecutive=failures)
                await asyncio.sleep(min(2.0**failures, 30.0) * self._config.poll_seconds)

    async def _cycle(self) -> None:
        """Record what finished and claim what fits, in one transaction."""
        finished, began = _drain(self._finished), _drain(self._began)
        done = {o.claimed.run_id for o in finished}
        now = utcnow()
        # Recording sets the start of finished runs; of the others, only those running for a
        # while are worth a statement now (most runs of a fan-out end before the next cycle).
        young = now - timedelta(seconds=_RECORD_DELAY)
        self._began.extend((run_id, at) for run_id, at in began if run_id not in done and at > young)
        began = [(run_id, at) for run_id, at in began if run_id not in done and at <= young]
        # A workflow with runs held here and not finished is open, and was marked running when
        # they were claimed. (A worker hands its outcome over before it lets go of the run.)
        open_here = {run.workflow_id for run in self._queue.held() if run.run_id not in done}
        waiting, executing = self._queue.sizes()
        backlog = self._queue.backlog()  # runs waiting on a workflow's own limit do not count
        room = want = 0
        if backlog <= self._low_water:  # above it, claiming now would only mean smaller batches
            room = want = max(0, self._config.max_concurrent_runs * _PREFETCH - backlog - executing)
            if not waiting and not executing:  # idle: start a first few at once, the rest next cycle
                want = min(room, 2 * self._config.max_concurrent_runs)
        try:
            async with self._db.session() as session:
                await queue.mark_started(session, began)
                finals, closed = await self._record(session, finished, now, open_here)
                claimed, skipped = await self._claim(session, want, now, open_here) if want else ([], 0)
        except BaseException:
            self._finished.extendleft(reversed(finished))  # nothing was recorded: next cycle
            self._began.extendleft(reversed(began))
            raise
        self._report(finals, closed)
        if claimed:
            self._queue.put(claimed)
        if want:
            # Skipped runs (open circuits) are taken too: the queue may hold more behind them.
            self._drained = len(claimed) + skipped < want
            if not self._drained and len(claimed) < room:
                self._wakeup.set()

    async def _record(
        self, session: AsyncSession, finished: list[Outcome], now: datetime, open_here: Collection[str] = ()
    ) -> tuple[list[Outcome], list[Closed]]:
        if not finished:
            return [], []
        return await outcomes.record_outcomes(
            session,
            finished,
            owner=self.instance_id,
            now=now,
            policies={o.claimed.workflow_name: self._policy(o.claimed.workflow_name) for o in finished},
            circuit_threshold=self._config.circuit_failure_threshold,
            open_here=open_here,
        )

    async def _claim(
        self, session: AsyncSession, want: int, now: datetime, running_here: Collection[str]
    ) -> tuple[list[Claimed], int]:
        """Claim up to `want` runs; returns them and how many were skipped by open circuits."""
        claimed, skipped, closed = await queue.claim_runs(
            session,
            owner=self.instance_id,
            now=now,
            lease_until=now + timedelta(seconds=self._config.lease_seconds),
            limit=want,
            only=self._only,
            cooldown_seconds=self._config.circuit_cooldown_seconds,
            running_here=running_here,
            exclude=self._queue.saturated(),
        )
        for run in skipped:
            self._metrics.repo_runs.labels(run.workflow_name, RunStatus.SKIPPED_CIRCUIT_OPEN).inc()
        self.report_closed(closed)
        return claimed, len(skipped)

    def _report(self, finals: list[Outcome], closed: list[Closed]) -> None:
        for outcome in finals:
            claimed = outcome.claimed
            self._metrics.repo_runs.labels(claimed.workflow_name, outcome.status).inc()
            # Success is the common case across a thousand repos: it goes to DEBUG; anything else to INFO.
            emit = log.debug if outcome.status == RunStatus.SUCCEEDED else log.info
            emit(
                "repo_run_finished",
                workflow_id=claimed.workflow_id,
                workflow=claimed.workflow_name,
                repo=claimed.repo,
                status=outcome.status,
                attempt=claimed.attempt,
                exit_code=outcome.result.exit_code,
            )
        self.report_closed(closed)

    def report_closed(self, closed: Sequence[Closed]) -> None:
        """Count workflows just closed, log them, trace them and wake their waiters: the ones
        this engine closes, and those closed elsewhere in this process (a cancel before any
        run started)."""
        for workflow in closed:
            if (event := self._closing.pop(workflow.id, None)) is not None:
                event.set()  # and forgotten: a later waiter waits for a later close (a DLQ retry)
            self._metrics.workflows.labels(workflow.name, workflow.status).inc()
            _trace_workflow(workflow)
            log.info(
                "workflow_finished", workflow_id=workflow.id, workflow=workflow.name, status=workflow.status
            )

    def _policy(self, workflow_name: str) -> RetryPolicy:
        definition = self._definitions.get(workflow_name)
        return definition.retry if definition else RetryPolicy()

    async def _flush(self, *, skip: Collection[str]) -> None:
        """Record what finished before a stop, so a clean stop loses no result (runs stopped by
        the stop itself, `skip`, are handed back instead)."""
        finished = [o for o in _drain(self._finished) if o.claimed.run_id not in skip]
        if not finished:
            return
        try:
            async with self._db.session() as session:
                finals, closed = await self._record(session, finished, utcnow())
            self._report(finals, closed)
        except Exception:
            log.exception("final_record_failed", runs=len(finished))

    async def _release(self, interrupted: Collection[str]) -> None:
        """Hand back runs claimed but not finished, so another engine takes them at once
        (cancelled ones are closed instead of requeued)."""
        held = [*interrupted, *(run.run_id for run in self._queue.held())]
        if not held:
            return
        try:
            async with self._db.session() as session:
                closed = await queue.release_runs(session, held, owner=self.instance_id, now=utcnow())
            self.report_closed(closed)
        except Exception:
            log.exception("release_failed")

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
        runs = self._queue.held()
        held = [run.run_id for run in runs]
        workflows = {run.workflow_id for run in runs}
        async with self._db.session() as session:
            await queue.heartbeat(session, instance, now)
            await queue.renew_leases(
                session, run_ids=held, lease_until=now + timedelta(seconds=self._config.lease_seconds)
            )
            cancelled = await records.cancelled_among(session, workflows)
            gauges = await records.gauges(session)
            settled = await records.close_settled_workflows(session, now)
        for workflow_id in cancelled:
            self.cancel_local(workflow_id=workflow_id)
        self.report_closed(settled)
        self._metrics.queue_depth.set(gauges.queued)
        self._metrics.dead_letters.set(gauges.dead_letters)
        self._metrics.circuit_open.set(gauges.open_circuits)
        if self._guard is not None and self._guard.ensure_reaper():
            log.warning("reaper_restarted", reason="the engine's reaper process had died")
        await self.heal()


def _drain(items: deque[_T]) -> list[_T]:
    """Take what is there now, leaving the deque to the threads that append to it."""
    taken: list[_T] = []
    with contextlib.suppress(IndexError):
        while True:
            taken.append(items.popleft())
    return taken


def _trace_workflow(workflow: Closed) -> None:
    """The workflow's span, from trigger to close, in the trace of the call that triggered it
    (emitted at the close: the workflow may have started in another process)."""
    span = tracer.start_span(
        f"workflow {workflow.name}",
        context=trace_context(workflow.trace_parent),
        start_time=int(workflow.created_at.timestamp() * 1e9),
        attributes={
            "mahavishnu.workflow_id": workflow.id,
            "mahavishnu.workflow": workflow.name,
            "mahavishnu.workflow_status": workflow.status,
        },
    )
    if workflow.status == WorkflowStatus.FAILED:
        span.set_status(StatusCode.ERROR, "every run failed")
    span.end(end_time=int(workflow.finished_at.timestamp() * 1e9))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
