"""The engine seam: what `WorkflowService` needs from whatever executes workflows.

The service stores a workflow and its queued runs, marks cancels and closes what it can close
itself, all in the database; an engine takes it from there. `local.LocalEngine` runs the runs as
subprocesses on this host; an engine on a distributed runtime implements the same five calls and
must pass the same contract suite (`tests/workflows`, parametrised over engines). Engines record
through `records.py` and decide through `decisions.py`, so the tables mean the same whichever
engine wrote them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mahavishnu.orchestrator.workflows.records import Closed

__all__ = ["WorkflowEngine"]


class WorkflowEngine(Protocol):
    def submit(self, workflow_id: str) -> None:
        """The workflow has runs queued now (a trigger, a dead-letter retry): start on them soon.
        Called after the commit; must not block or fail (the runs are durable either way)."""

    def cancel(self, workflow_id: str) -> None:
        """The workflow was marked cancelled and its queued runs cancelled (committed): stop its
        runs executing now, within seconds. Must not block; engines elsewhere learn of the cancel
        from the database."""

    def report_closed(self, closed: Sequence[Closed]) -> None:
        """Workflows the service closed itself (a cancel before any run started): count them and
        wake their waiters, as for the closes the engine makes."""

    async def until_closed(self, workflow_id: str) -> None:
        """Return once the workflow closes. May miss a close that came earlier or from elsewhere:
        callers bound the wait and read the status, which is the truth either way."""

    async def heal(self) -> int:
        """Requeue (or fail, per policy) runs whose executor died; returns how many."""

    def running(self, workflows: Collection[str] | None = None) -> AbstractAsyncContextManager[object]:
        """Execute workflows for the duration of the block; `workflows` limits it to those ids.
        On exit nothing of this engine's still runs, and unfinished runs are handed back."""
