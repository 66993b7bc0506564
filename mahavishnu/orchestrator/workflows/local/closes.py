"""What the local engine says about finished work: run and workflow counts, log lines, workflow
spans, and the waiters of `until_closed`.

Kept apart from the engine's loops because closes come from everywhere (a record, a claim that
finds a workflow cancelled, healing, the maintain sweep, the service's own cancel) and each must be
counted, logged and traced exactly once, the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Sequence

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.records import Claimed, Closed, Outcome
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus
from mahavishnu.platform.observability import get_logger, trace_context

__all__ = ["Closes"]

log = get_logger("mahavishnu.engine")
tracer = trace.get_tracer("mahavishnu.engine")


class Closes:
    """Reports final runs and closed workflows, and wakes whoever waits for a close."""

    def __init__(self, metrics: WorkflowMetrics) -> None:
        self._metrics = metrics
        self._waiting: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()

    async def until_closed(self, workflow_id: str) -> None:
        """Return at the next close of the workflow reported here (see `LocalEngine.until_closed`)."""
        event = self._waiting.get(workflow_id)
        if event is None:
            event = self._waiting[workflow_id] = asyncio.Event()
        await event.wait()

    def runs_finished(self, finals: Iterable[Outcome]) -> None:
        """Count and log runs whose status is final."""
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

    def skipped(self, runs: Iterable[Claimed]) -> None:
        """Count runs a claim skipped because their repository's circuit is open."""
        for run in runs:
            self._metrics.repo_runs.labels(run.workflow_name, RunStatus.SKIPPED_CIRCUIT_OPEN).inc()

    def closed(self, closed: Sequence[Closed]) -> None:
        """Count workflows just closed, log them, trace them and wake their waiters."""
        for workflow in closed:
            if (event := self._waiting.pop(workflow.id, None)) is not None:
                event.set()  # and forgotten: a later waiter waits for a later close (a DLQ retry)
            self._metrics.workflows.labels(workflow.name, workflow.status).inc()
            _trace_workflow(workflow)
            log.info(
                "workflow_finished", workflow_id=workflow.id, workflow=workflow.name, status=workflow.status
            )


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
