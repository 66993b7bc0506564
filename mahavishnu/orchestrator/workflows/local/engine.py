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
  what it claims. Cycles work in batches, never once per run, and claim
  about half a second of work per slot (`pacing.py`): engines sharing a
  database share the work too, none holding runs the others could start.
- A slower **maintain** loop renews leases, heals runs orphaned by a dead
  engine, relays cancellations made elsewhere and refreshes the gauges
  (`upkeep.py`, its transactions).
- On PostgreSQL a submit also wakes the other engines on the database
  (`announce.py`, LISTEN/NOTIFY), so replicas share new work at once.

Every close, whichever part makes it, is counted, logged, traced and wakes its
waiters in one place (`closes.py`).

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
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import outcomes
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy, WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import announce, attempts, queue, upkeep
from mahavishnu.orchestrator.workflows.local.closes import Closes
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard
from mahavishnu.orchestrator.workflows.local.pacing import Pacing, drain, split_started
from mahavishnu.orchestrator.workflows.local.process import Cancellation
from mahavishnu.orchestrator.workflows.local.workers import RunQueue, WorkerThreads
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.records import Claimed, Closed, Outcome
from mahavishnu.platform.db import Database
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import get_logger

__all__ = ["EngineConfig", "LocalEngine"]

log = get_logger("mahavishnu.engine")


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
        self._pacing = Pacing(config.max_concurrent_runs, config.poll_seconds)
        self._closes = Closes(metrics)
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by worker threads, drained by the cycle. Never swapped for a new object: a
        # thread may hold the old one between reading the attribute and appending to it.
        self._finished: deque[Outcome] = deque()
        self._began: deque[tuple[str, datetime]] = deque()
        self._queue = RunQueue(self._limits)
        self._drained = False
        """The last claim found less than it asked for: no need to ask again until new work comes."""
        self._tail = False
        """The queue ran empty while runs are long (`Pacing.shares_the_tail`): fill free slots only,
        and hand back runs no free slot takes, until new work comes."""
        self._only: frozenset[str] | None = None
        self._started = utcnow()
        self._guard: GroupGuard | None = None
        self._groups_dir = config.groups_dir or config.log_dir.parent / "engines"
        self._announcing: set[asyncio.Task[None]] = set()

    # --- public -------------------------------------------------------------
    def submit(self, workflow_id: str) -> None:
        """`WorkflowEngine.submit`: its runs are in the queue every engine claims from, so this
        engine only has to look sooner than its next poll, and tell the other engines on the
        database to look too (`announce.py`)."""
        self.wake()
        if self._loop is not None:
            task = self._loop.create_task(announce.announce(self._db))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)

    def cancel(self, workflow_id: str) -> None:
        """`WorkflowEngine.cancel`: stop this engine's runs of the workflow, waiting or executing
        (other engines see the cancel at their next maintain)."""
        self.cancel_local(workflow_id=workflow_id)

    def wake(self) -> None:
        """New work was queued: run a cycle now rather than at the next poll."""
        self._drained = self._tail = False
        self._wakeup.set()

    def cancel_local(self, run_ids: Collection[str] = (), workflow_id: str | None = None) -> int:
        """Stop this engine's runs (by id or by workflow), waiting or executing; returns how many."""
        return self._queue.cancel(lambda run: run.run_id in run_ids or run.workflow_id == workflow_id)

    async def until_closed(self, workflow_id: str) -> None:
        """Return once this engine closes the workflow.

        A close that came earlier, or from another engine, never wakes this: bound the wait
        and read the status, which is the truth either way.
        """
        await self._closes.until_closed(workflow_id)

    def report_closed(self, closed: Sequence[Closed]) -> None:
        """Count workflows just closed, log them, trace them and wake their waiters: the ones
        this engine closes, and those closed elsewhere in this process (a cancel before any
        run started)."""
        self._closes.closed(closed)

    async def heal(self) -> int:
        """Requeue (or fail) runs whose engine died; returns how many were healed.

        Between finding the dead engines of this host and requeueing their runs, the process
        groups that dead engines left running are killed and waited for (a requeued run must not
        start beside its lost attempt); no transaction stays open meanwhile.
        """
        dead = await upkeep.dead_engines(self._db, self.instance_id)
        # Every engine in `dead` had died: its ledger is reaped.
        skip = self._guard.path if self._guard is not None else None
        await asyncio.to_thread(attempts.kill_orphaned_groups, self._groups_dir, skip=skip)
        healed, closed = await upkeep.requeue_orphans(
            self._db,
            now=utcnow(),
            dead=dead,
            keep={run.run_id for run in self._queue.held()},
            requeue=self._config.heal_policy == "requeue",
        )
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
        self._drained = self._tail = False
        self._loop = asyncio.get_running_loop()
        self._queue = RunQueue(self._limits)
        name, slots = self.instance_id.replace(":", "_"), self._config.max_concurrent_runs
        self._guard = await asyncio.to_thread(attempts.start_guard, self._groups_dir, name, slots)
        try:
            now = utcnow()
            await upkeep.heartbeat(self._db, self.instance_id, now, now)
            await self.heal()
        except BaseException:
            await self._close_guard()
            raise
        threads = WorkerThreads(self._config.max_concurrent_runs, self._queue, self._execute)
        cycle = asyncio.create_task(self._cycle_loop(), name="engine-cycle")
        maintain = asyncio.create_task(self._maintain_loop(), name="engine-maintain")
        listening = asyncio.Event()
        listener = asyncio.create_task(announce.listen(self._db, self.wake, listening), name="engine-listen")
        try:
            # Once running, it hears of work submitted elsewhere (or polls, if its listener is slow).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(announce.READY_SECONDS):
                    await listening.wait()
            yield self
        finally:
            loops = (listener, maintain, cycle, *self._announcing)
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
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
        cycle, woken only as `Pacing.wake_for_outcome` says."""
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
        wake = self._pacing.wake_for_outcome(
            waiting=self._queue.sizes()[0], drained=self._drained, finished=len(self._finished)
        )
        if self._loop is not None and wake:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def _close_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            await asyncio.to_thread(guard.close)

    # --- the database cycle -----------------------------------------------------
    async def _cycle_loop(self) -> None:
        failures = 0
        while True:
            timeout = self._pacing.wait_seconds(busy=bool(self._finished or any(self._queue.sizes())))
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
        finished = drain(self._finished)
        done = {o.claimed.run_id for o in finished}
        # How much to hold follows how long runs take (`Pacing.depth`).
        self._pacing = self._pacing.observed([o.result.duration_seconds for o in finished if o.started])
        now = utcnow()
        later, began = split_started(drain(self._began), done, now)
        self._began.extend(later)
        # A workflow with runs held here and not finished is open, and was marked running when
        # they were claimed. (A worker hands its outcome over before it lets go of the run.)
        open_here = {run.workflow_id for run in self._queue.held() if run.run_id not in done}
        waiting, executing = self._queue.sizes()
        # The backlog leaves out runs waiting on a workflow's own limit.
        room, want = self._pacing.claim_size(
            backlog=self._queue.backlog(), waiting=waiting, executing=executing, tail=self._tail
        )
        try:
            async with self._db.session() as session:
                await queue.mark_started(session, began)
                finals, closed = await self._record(session, finished, now, open_here)
                claims = await self._claim(session, want, now, open_here) if want else None
        except BaseException:
            self._finished.extendleft(reversed(finished))  # nothing was recorded: next cycle
            self._began.extendleft(reversed(began))
            raise
        self._report(finals, closed)
        if claims is not None:
            self._queue.put(claims.runs)
            # Skipped runs (open circuits) are taken too: the queue may hold more behind them.
            self._drained = claims.exhausted
            busy = bool(executing) and self._pacing.shares_the_tail
            self._tail = self._tail or (claims.exhausted and busy)
            if not self._drained and len(claims.runs) < room:
                self._wakeup.set()  # other engines took some of what it read: look again
        if self._tail:
            await self._hand_back(self._queue.surplus(self._config.max_concurrent_runs))

    async def _hand_back(self, runs: list[Claimed]) -> None:
        """Requeue runs taken back before they started, so the first free slot of any engine on
        the database takes them (engines sharing a workflow then finish it together)."""
        if not runs:
            return
        try:
            async with self._db.session() as session:
                closed = await queue.release_runs(
                    session, [run.run_id for run in runs], owner=self.instance_id, now=utcnow()
                )
        except Exception:
            log.exception("hand_back_failed", runs=len(runs))
            self._queue.put(runs)  # still this engine's: they run here
            return
        self.report_closed(closed)

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
    ) -> queue.Claims:
        """Claim up to `want` runs (skipped ones and the closes they made are reported here)."""
        claims = await queue.claim_runs(
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
        self._closes.skipped(claims.skipped)
        self.report_closed(claims.closed)
        return claims

    def _report(self, finals: list[Outcome], closed: list[Closed]) -> None:
        self._closes.runs_finished(finals)
        self.report_closed(closed)

    def _policy(self, workflow_name: str) -> RetryPolicy:
        definition = self._definitions.get(workflow_name)
        return definition.retry if definition else RetryPolicy()

    async def _flush(self, *, skip: Collection[str]) -> None:
        """Record what finished before a stop, so a clean stop loses no result (runs stopped by
        the stop itself, `skip`, are handed back instead)."""
        finished = [o for o in drain(self._finished) if o.claimed.run_id not in skip]
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
        """One maintain round (`upkeep.maintain_round`), then act on it and heal."""
        found = await upkeep.maintain_round(
            self._db,
            instance_id=self.instance_id,
            started_at=self._started,
            now=utcnow(),
            held=self._queue.held(),
            lease_seconds=self._config.lease_seconds,
        )
        for workflow_id in found.cancelled:
            self.cancel_local(workflow_id=workflow_id)
        self.report_closed(found.settled)
        self._metrics.queue_depth.set(found.gauges.queued)
        self._metrics.dead_letters.set(found.gauges.dead_letters)
        self._metrics.circuit_open.set(found.gauges.open_circuits)
        if self._guard is not None and self._guard.ensure_reaper():
            log.warning("reaper_restarted", reason="the engine's reaper process had died")
        await self.heal()
