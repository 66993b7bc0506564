"""The Temporal workflow behind one Mahavishnu workflow: claim, execute in batches, record.

Deterministic by Temporal's rules: it only decides what to ask for next. Every read and write of
Mahavishnu's database is a control activity (`control.py`, on the replicas' queue); runs execute
in batch activities on their host's queue (`batches.py`). The database stays the record, so
the retry, breaker and dead-letter rules are the local engine's, applied when a batch is
recorded; this loop just keeps batches flowing until the database says the workflow closed.

Cancelling the Temporal workflow cancels its batches (their process groups are killed, what
finished is still recorded), settles the runs left in the database, and only then closes the
Temporal workflow as cancelled.
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError, TimeoutType
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from mahavishnu.orchestrator.workflows.temporal.config import runs_queue
    from mahavishnu.orchestrator.workflows.temporal.wire import (
        NOT_STARTED,
        Batch,
        BatchResult,
        Began,
        ClaimRequest,
        Plan,
        Recorded,
        Results,
        Settle,
        WorkflowInput,
        not_run,
        result_of,
        unpack_runs,
    )

__all__ = [
    "BEGAN",
    "CLAIM",
    "FINISHED",
    "MARK_STARTED",
    "RECORD",
    "RUN_BATCH",
    "SETTLE",
    "WAKE",
    "RepoRunsWorkflow",
]

CLAIM, RECORD, SETTLE, MARK_STARTED = (
    "mahavishnu.claim",
    "mahavishnu.record",
    "mahavishnu.settle",
    "mahavishnu.started",
)
RUN_BATCH = "mahavishnu.run_batch"
BEGAN, FINISHED, WAKE = "mahavishnu.began", "mahavishnu.finished", "mahavishnu.wake"
_CONTROL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=0.5), maximum_interval=timedelta(seconds=10))
IDLE_LOOK_SECONDS = 300.0
_BATCH_ATTEMPTS = 5
"""A batch is retried (on another worker of its host) this often after its worker died."""


@workflow.defn(name="mahavishnu.repo_runs")
class RepoRunsWorkflow:
    """Workflow tasks of one workflow run one at a time, so each costs the whole fan-out: it
    claims only when that can find work (room and runs left, a retry requeued, a wake, a
    backoff ended), records finished batches together, and hears of a run's start only when
    the run lasts (`batches.BEGAN_AFTER_SECONDS`)."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()
        self._results: list[BatchResult] = []
        self._recording = False
        self._began: list[Began] = []
        self._woken = False
        self._requeued = False
        self._closed: str | None = None

    @workflow.signal(name=BEGAN)
    def began(self, runs: list[Began]) -> None:
        """A batch's run is under way (its worker says so): the database shows it running."""
        self._began.extend(runs)

    @workflow.signal(name=FINISHED)
    def finished(self, result: BatchResult) -> None:
        """A long batch's runs finished so far: recorded now, not when the batch ends."""
        self._results.append(result)

    @workflow.signal(name=WAKE)
    def wake(self) -> None:
        """New runs were queued (a dead-letter retry): claim again now."""
        self._woken = True

    @workflow.run
    async def run(self, given: WorkflowInput) -> str:
        try:
            return await self._loop(given)
        except asyncio.CancelledError:
            await self._drain(cancel=True)
            await _control(given, SETTLE, Settle(given.workflow_id))
            raise

    async def _loop(self, given: WorkflowInput) -> str:
        # A fresh incarnation has nothing in flight: runs still marked running under this
        # workflow were lost with a previous one (a crash, a termination), and go round again.
        await _control(given, SETTLE, Settle(given.workflow_id))
        exhausted, deadline = False, None
        claim = True
        while True:
            if claim:
                self._woken = self._requeued = False
                request = ClaimRequest(given.workflow_id, len(self._pending))
                plan: Plan = await _control(given, CLAIM, request, result_type=Plan)
                for batch in plan.batches:
                    task = asyncio.create_task(self._execute(given, batch))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                if plan.closed and not self._pending:
                    await self._note_began(given)
                    return plan.status
                exhausted = plan.exhausted
                wait = None if plan.full else plan.wait_seconds
                if wait is None and not self._pending:
                    wait = IDLE_LOOK_SECONDS  # nothing in flight, nothing queued: look now and then
                deadline = None if wait is None else workflow.now() + timedelta(seconds=max(wait, 0.05))
            if self._closed is not None and not self._pending:
                return self._closed
            if workflow.info().get_current_history_length() > given.history_limit:
                await self._drain(cancel=False)
                workflow.continue_as_new(given)
            timed_out = await self._wait(given, len(self._pending), deadline)
            claim = timed_out or self._woken or self._requeued or not exhausted or not self._pending

    async def _wait(self, given: WorkflowInput, before: int, deadline: datetime | None) -> bool:
        """Until a batch finishes, a wake comes or `deadline` passes (True then); runs that
        began meanwhile are marked started on the way."""
        while True:
            timeout = None if deadline is None else max(deadline - workflow.now(), timedelta(milliseconds=1))
            try:
                await workflow.wait_condition(
                    lambda: (
                        len(self._pending) < before
                        or self._woken
                        or bool(self._began)
                        or bool(self._results and not self._recording)
                    ),
                    timeout=timeout,
                )
            except builtins.TimeoutError:
                return True
            await self._note_began(given)
            await self._flush(given)
            if len(self._pending) < before or self._woken:
                return False

    async def _note_began(self, given: WorkflowInput) -> None:
        if self._began:
            began, self._began = self._began, []
            await _control(given, MARK_STARTED, began)

    async def _drain(self, *, cancel: bool) -> None:
        if cancel:
            for task in list(self._pending):
                task.cancel()
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _execute(self, given: WorkflowInput, batch: Batch) -> None:
        """One batch on its host's queue, then its record (a batch no worker took in time, or
        that kept losing its workers, fails its runs with the reason)."""
        try:
            result: BatchResult = await workflow.execute_activity(
                RUN_BATCH,
                batch,
                result_type=BatchResult,
                task_queue=runs_queue(given.task_queue_prefix, batch.host),
                schedule_to_start_timeout=timedelta(seconds=given.host_timeout_seconds),
                start_to_close_timeout=timedelta(days=1),
                heartbeat_timeout=timedelta(seconds=given.heartbeat_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=0.2), maximum_attempts=_BATCH_ATTEMPTS
                ),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as error:
            # Cancelled before a worker took it (no attempt), or failed on every worker.
            cancelled = isinstance(error.cause, CancelledError)
            reason = NOT_STARTED if cancelled else _reason(batch, given, error)
            now = workflow.now().timestamp()
            result = result_of([not_run(run, reason, now) for run in unpack_runs(batch.runs)])
        except asyncio.CancelledError:
            return  # the settle after the drain closes these runs
        await self._record(given, result)

    async def _record(self, given: WorkflowInput, result: BatchResult) -> None:
        """One record in flight at a time, taking every batch finished meanwhile: under load,
        batches are recorded several at once."""
        self._results.append(result)
        await self._flush(given)

    async def _flush(self, given: WorkflowInput) -> None:
        while self._results:
            if self._recording:
                await workflow.wait_condition(lambda: not self._recording)
                continue
            waiting, self._results = self._results, []
            merged = Results(waiting)
            self._recording = True
            try:
                recorded: Recorded = await _control(given, RECORD, merged, result_type=Recorded)
            finally:
                self._recording = False
            self._requeued = self._requeued or recorded.requeued
            if recorded.closed is not None:
                self._closed = recorded.closed


async def _control(given: WorkflowInput, name: str, arg: object, result_type: type | None = None) -> Any:
    """A database activity, on the replicas' queue, retried until the database answers."""
    return await workflow.execute_activity(
        name,
        arg,
        task_queue=given.control_queue,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=_CONTROL_RETRY,
    )


def _reason(batch: Batch, given: WorkflowInput, error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
        host = batch.host or "any host"
        return f"host unavailable: no worker for {host} took the run within {given.host_timeout_seconds:g} s"
    return f"its batch failed on every worker: {cause or error}"
