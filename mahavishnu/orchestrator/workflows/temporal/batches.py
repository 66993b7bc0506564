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
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import attempts
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard
from mahavishnu.orchestrator.workflows.local.process import Cancellation
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.records import Outcome
from mahavishnu.orchestrator.workflows.temporal.control import to_claimed
from mahavishnu.orchestrator.workflows.temporal.wire import Batch, BatchResult, Began, RunDone, RunToDo
from mahavishnu.orchestrator.workflows.temporal.workflow import BEGAN, RUN_BATCH

__all__ = ["BatchRunner"]


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
        self._signals: set[asyncio.Future[None]] = set()

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
        done, current = _progress(activity.info().heartbeat_details)
        finished = {d.run.run_id for d in done}
        lost: list[RunToDo] = []
        todo = [run for run in batch.runs if run.run_id not in finished]
        for index, run in enumerate(todo):
            if current is not None and current.run_id == run.run_id and current.attempt == run.attempt:
                lost.append(run)  # the worker before this one died during it: it goes again
                run = dataclasses.replace(
                    run, attempt=run.attempt + 1, max_attempts=max(run.max_attempts, run.attempt + 1)
                )
            activity.heartbeat(_details(done, run))
            self._tell_began(run)
            outcome, cancelled = await self._execute(run, done)
            done.append(_done(run, outcome))
            if cancelled:
                done.extend(_unstarted(later) for later in todo[index + 1 :])
                break
        return BatchResult(done, lost)

    def _tell_began(self, run: RunToDo) -> None:
        """Signal the workflow that the run starts (it has a replica mark it started), without
        holding the run up: a lost signal only delays the running state to the record."""
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None, "a batch runs inside a workflow"
        handle = activity.client().get_workflow_handle(workflow_id)
        began = Began(run.run_id, run.attempt, datetime.now(UTC).timestamp())
        task = asyncio.ensure_future(handle.signal(BEGAN, [began]))
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def _execute(self, run: RunToDo, done: list[RunDone]) -> tuple[Outcome, bool]:
        """One run in a thread of its own, heartbeating while it runs; a cancel of the activity
        stops its process group and still returns its outcome."""
        assert self._threads is not None, "serving() first"
        cancel = Cancellation()
        slot = await self._free.get()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, self._attempt, run, cancel, slot)
        future.add_done_callback(lambda _: self._free.put_nowait(slot))
        beating = asyncio.ensure_future(self._beat(done, run))
        try:
            return await asyncio.shield(future), False
        except asyncio.CancelledError:
            cancel.request()
            return await future, True
        finally:
            beating.cancel()

    def _attempt(self, run: RunToDo, cancel: Cancellation, slot: int) -> Outcome:
        claimed = to_claimed(run)
        return attempts.execute(
            claimed,
            cancel,
            slot=slot,
            config=self._config,
            definition=self._definitions.get(claimed.workflow_name),
            metrics=self._metrics,
            guard=self._guard,
            began=lambda _run_id, _at: None,
        )

    async def _beat(self, done: list[RunDone], run: RunToDo) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds / 3)
            activity.heartbeat(_details(done, run))


def _details(done: list[RunDone], current: RunToDo) -> dict[str, Any]:
    return {"done": [dataclasses.asdict(d) for d in done], "current": dataclasses.asdict(current)}


def _progress(details: Any) -> tuple[list[RunDone], RunToDo | None]:
    """What an earlier try of this batch heartbeated: the runs it finished and the one it ran."""
    if not details:
        return [], None
    last = details[-1]
    done = [RunDone(**{**d, "run": RunToDo(**d["run"])}) for d in last.get("done", [])]
    current = last.get("current")
    return done, RunToDo(**current) if current else None


def _done(run: RunToDo, outcome: Outcome) -> RunDone:
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


def _unstarted(run: RunToDo) -> RunDone:
    """A run its batch never reached before a cancel: no attempt."""
    return RunDone(
        run=run,
        exit_code=None,
        timed_out=False,
        cancelled=True,
        duration_seconds=0.0,
        output_tail="",
        output_bytes=0,
        error="cancelled before it started",
        log_written=False,
        started_at=datetime.now(UTC).timestamp(),
        log_path="",
        started=False,
    )
