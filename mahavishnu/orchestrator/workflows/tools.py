"""Workflow tools for MCP clients: thin wrappers over WorkflowService, one per use case."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mahavishnu.orchestrator.workflows.idempotency import KEY_MAX_LENGTH, KEY_PATTERN
from mahavishnu.orchestrator.workflows.pages import (
    DeadLetterList,
    SearchPage,
    StatisticsPage,
    WorkflowList,
    WorkflowStatusPage,
)
from mahavishnu.orchestrator.workflows.service import MAX_PAGE, WorkflowService
from mahavishnu.orchestrator.workflows.views import DeadLetterView, WorkflowDefinitionView
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.client_logging import client_log
from mahavishnu.platform.mcp import ToolSpec

__all__ = ["WorkflowTools"]

ParamValue = str | int | bool
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")]
RunLimit = Annotated[
    int, Field(ge=0, le=MAX_PAGE, description=f"Runs per page, 0 (counts only) to {MAX_PAGE}.")
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        pattern=KEY_PATTERN,
        description=(
            "Send the same key when retrying a trigger whose answer was lost: a trigger this caller "
            "made with it before is answered with that workflow instead of starting another "
            "(the same key with other arguments is an error). Letters, digits and . _ : -"
        ),
    ),
]
IdOrPrefix = Annotated[
    str, Field(description="The full ID or a unique prefix of it (at least 4 characters).")
]


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
        limit: RunLimit = 50,
        idempotency_key: IdempotencyKey = None,
    ) -> WorkflowStatusPage:
        """Run a configured workflow (see list_workflow_definitions) in every repository matching
        `tag`, `role` and `repos` (names), with `params` for its declared parameters, e.g.
        workflow="agent", tag="python", params={"prompt": "update the changelog"}.

        Returns at once with status `queued` and the workflow id; poll get_workflow_status. With
        `wait: true` it returns when every repo run is final (or after `wait_timeout_seconds`),
        sending progress notifications when the request carries a progress token, and the same
        events as log messages to a caller that set a level (logging/setLevel). The answer
        holds the runs' counts by status and the first `limit` runs (see get_workflow_status).
        With `idempotency_key`, retrying the same call returns the same workflow id."""
        principal = current_principal()
        summary = await self._service.trigger(
            principal,
            workflow,
            tag=tag,
            role=role,
            repos=repos,
            params=params,
            idempotency_key=idempotency_key,
        )
        if not wait:
            return await self._service.status(principal, summary.workflow_id, limit=limit)
        view = await self._service.status(principal, summary.workflow_id, limit=0)
        deadline = time.monotonic() + wait_timeout_seconds
        reported = -1
        while view.finished_at is None and time.monotonic() < deadline:
            if view.done != reported:
                reported = view.done
                total = view.runs_in_scope
                await ctx.report_progress(view.done, total, f"{view.done}/{total} repos done")
                await client_log().info(f"{view.done}/{total} repos done", workflow_id=summary.workflow_id)
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow a cancel
                async with asyncio.timeout(self._interval):
                    await self._service.until_closed(summary.workflow_id)
            view = await self._service.status(principal, summary.workflow_id, limit=0)
        view = await self._service.status(principal, summary.workflow_id, limit=limit)
        await ctx.report_progress(view.done, view.runs_in_scope, f"workflow {view.status}")
        await client_log().info(
            f"workflow {view.status}", workflow_id=summary.workflow_id, counts=view.counts
        )
        return view

    async def get_workflow_status(
        self,
        workflow_id: IdOrPrefix,
        status: str | None = None,
        limit: RunLimit = 50,
        cursor: str | None = None,
    ) -> WorkflowStatusPage:
        """Get a workflow's overall status (queued, running, succeeded, partial, failed, cancelled),
        `counts` of its repo runs by status, and a page of its runs by repository name (only
        those with `status` if given): status, attempt, exit code, duration, output tail, error.
        `total` counts the runs the filter matches; pass `next_cursor` back as `cursor` for the
        next page. To watch a workflow, poll with `limit: 0` (counts only). While it runs, the
        answer may be up to 0.1 s old (watchers share it); a finished workflow's is always fresh."""
        return await self._service.status(
            current_principal(), workflow_id, run_status=status, limit=limit, cursor=cursor, shared=True
        )

    async def list_workflows(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: str | None = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> WorkflowList:
        """List workflows, newest first, optionally by status, workflow name and `since` (ISO 8601).
        Pass `next_cursor` back as `cursor` for the next page; `total` counts them all."""
        return await self._service.list(
            current_principal(), status=status, workflow=workflow, since=since, limit=limit, cursor=cursor
        )

    async def cancel_workflow(self, workflow_id: IdOrPrefix, limit: RunLimit = 50) -> WorkflowStatusPage:
        """Cancel a workflow: queued repo runs never start, running ones are stopped within seconds.
        Answers as get_workflow_status does, with the first `limit` runs."""
        return await self._service.cancel(current_principal(), workflow_id, limit=limit)

    async def search_workflows(self, text: str, limit: Limit = 20, cursor: str | None = None) -> SearchPage:
        """Full-text search in the output and errors of past repo runs, newest first. Words, not
        regexes: each must occur, case does not matter, and a word with punctuation (`README.md`,
        `src/app.py`) matches its parts in that order. Pass `next_cursor` back for more."""
        return await self._service.search(current_principal(), text, limit, cursor)

    async def get_workflow_statistics(self, limit: Limit = 50, cursor: str | None = None) -> StatisticsPage:
        """Counts by status and repo-run duration percentiles (p50, p95, p99), per workflow name,
        in name order. Pass `next_cursor` back as `cursor` for the next page."""
        return await self._service.statistics(current_principal(), limit=limit, cursor=cursor)

    async def list_dead_letters(
        self, include_resolved: bool = False, limit: Limit = 50, cursor: str | None = None
    ) -> DeadLetterList:
        """List repo runs that used up their retries (the dead-letter queue), newest first, with
        their last error. Pass `next_cursor` back as `cursor` for the next page."""
        return await self._service.dead_letters(
            current_principal(), include_resolved=include_resolved, limit=limit, cursor=cursor
        )

    async def retry_dead_letter(self, dead_letter_id: IdOrPrefix) -> DeadLetterView:
        """Run a dead-lettered repo run again as a new attempt; it leaves the queue only if it succeeds."""
        return await self._service.retry_dead_letter(current_principal(), dead_letter_id)

    async def heal_workflows(self) -> HealResult:
        """Find runs left `running` by an engine that died and requeue them (or fail them, per settings)."""
        return HealResult(healed=await self._service.heal(current_principal()))
