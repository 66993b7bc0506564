"""Workflow tools for MCP clients: thin wrappers over WorkflowService, one per use case."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mahavishnu.orchestrator.workflows.service import MAX_PAGE, WorkflowService
from mahavishnu.orchestrator.workflows.views import (
    DeadLetterPage,
    DeadLetterView,
    SearchResult,
    WorkflowDefinitionView,
    WorkflowPage,
    WorkflowStatistics,
    WorkflowView,
)
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.mcp import ToolSpec

__all__ = ["WorkflowTools"]

ParamValue = str | int | bool


class DefinitionList(BaseModel):
    workflows: list[WorkflowDefinitionView]


class HealResult(BaseModel):
    healed: int = Field(description="Runs found orphaned by a dead engine and requeued (or failed).")


class WorkflowTools:
    def __init__(self, service: WorkflowService, *, progress_interval: float = 0.5) -> None:
        self._service = service
        self._interval = progress_interval

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.list_workflow_definitions, title="List runnable workflows"),
            ToolSpec(self.trigger_workflow, min_role="operator", read_only=False, title="Run a workflow"),
            ToolSpec(self.get_workflow_status, title="Workflow status"),
            ToolSpec(self.list_workflows, title="List workflows"),
            ToolSpec(self.cancel_workflow, min_role="operator", read_only=False, title="Cancel a workflow"),
            ToolSpec(self.search_workflows, title="Search workflow output"),
            ToolSpec(self.get_workflow_statistics, title="Workflow statistics"),
            ToolSpec(self.list_dead_letters, min_role="admin", title="List dead letters"),
            ToolSpec(self.retry_dead_letter, min_role="admin", read_only=False, title="Retry a dead letter"),
            ToolSpec(self.heal_workflows, min_role="admin", read_only=False, title="Heal orphaned runs"),
        ]

    async def list_workflow_definitions(self) -> DefinitionList:
        """List the workflows the operator configured (name, description, parameters, limits).
        Only these can be run; there is no way to run an arbitrary command."""
        return DefinitionList(workflows=self._service.definitions(current_principal()))

    async def trigger_workflow(
        self,
        workflow: str,
        ctx: Context,
        tag: str | None = None,
        role: str | None = None,
        repos: list[str] | None = None,
        params: dict[str, ParamValue] | None = None,
        wait: bool = False,
        wait_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 600,
    ) -> WorkflowView:
        """Run a configured workflow (see list_workflow_definitions) in every repository matching
        `tag`, `role` and `repos` (names), with `params` for its declared parameters, e.g.
        workflow="agent", tag="python", params={"prompt": "update the changelog"}.

        Returns at once with status `queued` and the workflow id; poll get_workflow_status. With
        `wait: true` it returns when every repo run is final (or after `wait_timeout_seconds`),
        sending progress notifications when the request carries a progress token."""
        principal = current_principal()
        summary = await self._service.trigger(
            principal, workflow, tag=tag, role=role, repos=repos, params=params
        )
        view = await self._service.status(principal, summary.workflow_id)
        if not wait:
            return view
        deadline = time.monotonic() + wait_timeout_seconds
        reported = -1
        while view.finished_at is None and time.monotonic() < deadline:
            if view.done != reported:
                reported = view.done
                await ctx.report_progress(
                    view.done, len(view.runs), f"{view.done}/{len(view.runs)} repos done"
                )
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow a cancel
                async with asyncio.timeout(self._interval):
                    await self._service.until_closed(summary.workflow_id)
            view = await self._service.status(principal, summary.workflow_id)
        await ctx.report_progress(view.done, len(view.runs), f"workflow {view.status}")
        return view

    async def get_workflow_status(self, workflow_id: str) -> WorkflowView:
        """Get a workflow's overall status (queued, running, succeeded, partial, failed, cancelled)
        and, per repository: status, attempt, exit code, duration, output tail and error."""
        return await self._service.status(current_principal(), workflow_id)

    async def list_workflows(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: str | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """List workflows, newest first, optionally by status, workflow name and `since` (ISO 8601).
        Pass `next_cursor` back as `cursor` for the next page."""
        return await self._service.list(
            current_principal(), status=status, workflow=workflow, since=since, limit=limit, cursor=cursor
        )

    async def cancel_workflow(self, workflow_id: str) -> WorkflowView:
        """Cancel a workflow: queued repo runs never start, running ones are stopped within seconds."""
        return await self._service.cancel(current_principal(), workflow_id)

    async def search_workflows(
        self, text: str, limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 20
    ) -> SearchResult:
        """Full-text search in the output and errors of past repo runs (words, not regexes)."""
        return await self._service.search(current_principal(), text, limit)

    async def get_workflow_statistics(self) -> WorkflowStatistics:
        """Counts by status and repo-run duration percentiles (p50, p95, p99), per workflow."""
        return await self._service.statistics(current_principal())

    async def list_dead_letters(self, include_resolved: bool = False) -> DeadLetterPage:
        """List repo runs that used up their retries (the dead-letter queue), with their last error."""
        return await self._service.dead_letters(current_principal(), include_resolved=include_resolved)

    async def retry_dead_letter(self, dead_letter_id: str) -> DeadLetterView:
        """Run a dead-lettered repo run again as a new attempt; it leaves the queue only if it succeeds."""
        return await self._service.retry_dead_letter(current_principal(), dead_letter_id)

    async def heal_workflows(self) -> HealResult:
        """Find runs left `running` by an engine that died and requeue them (or fail them, per settings)."""
        return HealResult(healed=await self._service.heal(current_principal()))
