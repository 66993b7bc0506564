"""The batch activity: a host's worker executes a batch of runs, one after another, on the same
process runner as the local engine (`local.attempts.execute`: process groups, timeouts, output
caps, the environment allowlist, the group ledger and its reaper).

One activity per run would cost Temporal 5-30 ms each; a batch costs that once. Progress is
checkpointed in heartbeat details, so a batch retried after its worker died skips the runs it
finished and records the attempt the worker died in as lost. A cancel (delivered through the
heartbeat) kills the running process group and returns what the batch did, the rest unstarted.
Needs no database: the outcomes go back to the workflow, which has a replica record them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import attempts
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard
from mahavishnu.orchestrator.workflows.local.process import Cancellation
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.records import Claimed, Outcome
from mahavishnu.orchestrator.workflows.temporal.wire import (
    NOT_STARTED,
    Batch,
    BatchResult,
    Began,
    RunDone,
    not_run,
    pack_done,
    pack_runs,
    result_of,
    unpack_done,
    unpack_runs,
)
from mahavishnu.orchestrator.workflows.temporal.workflow import BEGAN, FINISHED, RUN_BATCH

__all__ = ["BEGAN_AFTER_SECONDS", "BatchRunner"]

BEGAN_AFTER_SECONDS = 0.5
FIRST_REPORT_SECONDS, LAST_REPORT_SECONDS = 0.25, 4.0
"""A batch still running sends the outcomes it has after this long, then at doubling intervals
up to the last: a long batch shows progress at once, a quick one sends nothing."""
HEARTBEAT_EVERY_SECONDS = 0.5
"""The activity looks at its batch this often: heartbeats (the SDK throttles what it sends)
and the began signal."""


class BatchRunner:
    """Executes batches with at most `slots` runs at once in this process (one per batch)."""

    def __init__(
        self,
        config: EngineConfig,
        definitions: Mapping[str, WorkflowDefinition],
        metrics: WorkflowMetrics,
        *,
        heartbeat_seconds: float,
    ) -> None:
        self._config = config
        self._definitions = definitions
        self._metrics = metrics
        self._heartbeat_seconds = heartbeat_seconds
        self.slots = config.max_concurrent_runs
        self._free: asyncio.Queue[int] = asyncio.Queue()
        self._threads: ThreadPoolExecutor | None = None
        self._guard: GroupGuard | None = None

    @contextlib.asynccontextmanager
    async def serving(self, name: str) -> AsyncIterator[BatchRunner]:
        """Threads and the process-group ledger for the duration of the block; on exit nothing
        started here still runs (the guard kills any group left)."""
        groups_dir = self._config.groups_dir or self._config.log_dir.parent / "engines"
        self._guard = await asyncio.to_thread(attempts.start_guard, groups_dir, name, self.slots)
        own = self._guard.path if self._guard is not None else None
        await asyncio.to_thread(attempts.kill_orphaned_groups, groups_dir, skip=own)
        self._threads = ThreadPoolExecutor(self.slots, thread_name_prefix="batch")
        for slot in range(self.slots):
            self._free.put_nowait(slot)
        try:
            yield self
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)
            guard, self._guard = self._guard, None
            if guard is not None:
                await asyncio.to_thread(guard.close)

    @activity.defn(name=RUN_BATCH)
    async def run_batch(self, batch: Batch) -> BatchResult:
        """The batch's runs one after another in one thread (no event-loop round trip between
        them), heartbeating its progress; a retried batch resumes from the last heartbeat."""
        assert self._threads is not None, "serving() first"
        progress = _resume(batch, activity.info().heartbeat_details)
        slot = await self._free.get()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, self._run_all, progress, slot)
        future.add_done_callback(lambda _: self._free.put_nowait(slot))
        told: set[str] = set()
        reported = 0
        pause = FIRST_REPORT_SECONDS
        report_at = time.monotonic() + pause
        beat = min(HEARTBEAT_EVERY_SECONDS, FIRST_REPORT_SECONDS, self._heartbeat_seconds / 3)
        try:
            while not future.done():
                await asyncio.wait([future], timeout=beat)
                activity.heartbeat(progress.details())
                await self._tell_began(progress, told)
                if time.monotonic() >= report_at:
                    reported = await self._report(progress, reported)
                    pause = min(pause * 2, LAST_REPORT_SECONDS)
                    report_at = time.monotonic() + pause
        except asyncio.CancelledError:
            progress.stop()  # kills the running group; the rest never start
            await future
        # What a signal already carried is left out (recording is idempotent either way).
        return result_of(progress.done[reported:], progress.lost)

    async def _report(self, progress: _Progress, reported: int) -> int:
        """A long batch sends what it finished so far to the workflow (which has it recorded),
        so its runs show done as they finish; returns how many are reported now."""
        done = progress.done
        if len(done) == reported:
            return reported
        try:
            await self._workflow().signal(FINISHED, result_of(done[reported:], progress.lost))
        except RPCError:
            return reported  # the batch's result carries them instead
        return len(done)

    def _workflow(self) -> WorkflowHandle[Any, Any]:
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None, "a batch runs inside a workflow"
        return activity.client().get_workflow_handle(workflow_id)

    def _run_all(self, progress: _Progress, slot: int) -> None:
        """In a worker thread: each run to the end, in order, until stopped."""
        while (run := progress.next()) is not None:
            cancel = progress.begin(run)
            if cancel is None:
                progress.finish(not_run(run, NOT_STARTED, time.time()))
                continue
            outcome = self._attempt(run, cancel, slot)
            progress.finish(_done(run, outcome))

    async def _tell_began(self, progress: _Progress, told: set[str]) -> None:
        """Once a run has lasted `BEGAN_AFTER_SECONDS`, signal the workflow that it is under way
        (it has a replica mark it started). Shorter runs are recorded before anyone could watch
        them run, and a signal each would cost the workflow a task per run."""
        current = progress.current
        if current is None or current[0].run_id in told:
            return
        run, began_at = current
        if time.time() - began_at < BEGAN_AFTER_SECONDS:
            return
        told.add(run.run_id)
        with contextlib.suppress(RPCError):  # lost: the record still says when it started
            await self._workflow().signal(BEGAN, [Began(run.run_id, run.attempt, began_at)])

    def _attempt(self, run: Claimed, cancel: Cancellation, slot: int) -> Outcome:
        return attempts.execute(
            run,
            cancel,
            slot=slot,
            config=self._config,
            definition=self._definitions.get(run.workflow_name),
            metrics=self._metrics,
            guard=self._guard,
            began=lambda _run_id, _at: None,
        )


class _Progress:
    """A batch's progress, shared by its thread (which runs it) and the activity (which
    heartbeats it and may stop it); every field is replaced whole, never mutated in place, so
    a read from the other side sees a consistent value."""

    def __init__(self, todo: list[Claimed], done: list[RunDone], lost: list[Claimed]) -> None:
        self._todo = list(todo)
        self.done = done
        self.lost = lost
        self.current: tuple[Claimed, float] | None = None
        self._cancel: Cancellation | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def next(self) -> Claimed | None:
        return self._todo.pop(0) if self._todo else None

    def begin(self, run: Claimed) -> Cancellation | None:
        """The run starts now, or None when the batch was stopped first."""
        with self._lock:
            if self._stopped:
                return None
            self._cancel = Cancellation()
            self.current = (run, time.time())
            return self._cancel

    def finish(self, done: RunDone) -> None:
        with self._lock:
            self.done = [*self.done, done]
            self.current, self._cancel = None, None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            cancel = self._cancel
        if cancel is not None:
            cancel.request()

    def details(self) -> dict[str, Any]:
        with self._lock:
            done, current = self.done, self.current
        return {
            "done": pack_done(done),
            "current": pack_runs([current[0]]) if current else None,
            "lost": pack_runs(self.lost),
        }


def _resume(batch: Batch, details: Any) -> _Progress:
    """Where an earlier try of this batch got to (its last heartbeat): the runs it finished are
    kept, the one it was running when its worker died is recorded lost and runs again as the
    next attempt (a lost attempt costs no retry)."""
    last = details[-1] if details else {}
    done = unpack_done(last.get("done", "[]"))
    lost = unpack_runs(last.get("lost", "[]"))
    current = unpack_runs(last["current"])[0] if last.get("current") else None
    finished = {d.run.run_id for d in done}
    todo = []
    for run in unpack_runs(batch.runs):
        if run.run_id in finished:
            continue
        if current is not None and current.run_id == run.run_id:
            lost.append(current)
            attempt = current.attempt + 1
            run = dataclasses.replace(run, attempt=attempt, max_attempts=max(current.max_attempts, attempt))
        todo.append(run)
    return _Progress(todo, done, lost)


def _done(run: Claimed, outcome: Outcome) -> RunDone:
    result = outcome.result
    return RunDone(
        run=run,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        cancelled=result.cancelled,
        duration_seconds=result.duration_seconds,
        output_tail=result.output_tail,
        output_bytes=result.output_bytes,
        error=result.error,
        log_written=result.log_written,
        started_at=outcome.started_at.timestamp(),
        log_path=outcome.log_path,
        started=outcome.started,
    )
