"""What callers see of workflows: response schemas, separate from the ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from mahavishnu.orchestrator.workflows.models import Attempt, DeadLetter, RepoRun, Workflow

__all__ = [
    "RUN_VIEW_COLUMNS",
    "AttemptView",
    "DeadLetterPage",
    "DeadLetterView",
    "RunFields",
    "RunView",
    "SearchHit",
    "SearchResult",
    "WorkflowDefinitionView",
    "WorkflowPage",
    "WorkflowStatistics",
    "WorkflowSummary",
    "WorkflowView",
]


class RunFields(Protocol):
    """What a run view is made of: an ORM `RepoRun`, or a row of `RUN_VIEW_COLUMNS` (a status
    page reads only those: loading whole ORM rows cost most of a watcher's answer)."""

    @property
    def id(self) -> str: ...
    @property
    def repo(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def duration_seconds(self) -> float | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def output_tail(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


RUN_VIEW_COLUMNS = (
    RepoRun.id,
    RepoRun.repo,
    RepoRun.status,
    RepoRun.attempt,
    RepoRun.max_attempts,
    RepoRun.exit_code,
    RepoRun.duration_seconds,
    RepoRun.started_at,
    RepoRun.finished_at,
    RepoRun.output_tail,
    RepoRun.error,
)


class RunView(BaseModel):
    run_id: str
    repo: str
    status: str
    attempt: int
    max_attempts: int
    exit_code: int | None
    duration_seconds: float | None
    started_at: datetime | None
    finished_at: datetime | None
    output_tail: str | None
    error: str | None

    @classmethod
    def of(cls, run: RunFields) -> RunView:
        # An engine may hold a run for a moment before a slot frees: it has not started, so it is queued.
        status = "queued" if run.status == "running" and run.started_at is None else run.status
        return cls(
            run_id=run.id,
            repo=run.repo,
            status=status,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            exit_code=run.exit_code,
            duration_seconds=run.duration_seconds,
            started_at=run.started_at,
            finished_at=run.finished_at,
            output_tail=run.output_tail,
            error=run.error,
        )


class AttemptView(BaseModel):
    """One execution of a repo run. `output_tail` is the database's tail for the run's latest
    attempt; for an earlier one, the end of its log file when this machine has it (else None)."""

    attempt: int
    status: str
    exit_code: int | None
    duration_seconds: float
    started_at: datetime
    finished_at: datetime
    error: str | None
    output_tail: str | None = None
    log_file: str | None = Field(default=None, description="The attempt's log, when this machine has it.")

    @classmethod
    def of(cls, row: Attempt, *, output_tail: str | None, log_file: str | None) -> AttemptView:
        return cls(
            attempt=row.attempt,
            status=row.status,
            exit_code=row.exit_code,
            duration_seconds=row.duration_seconds,
            started_at=row.started_at,
            finished_at=row.finished_at,
            error=row.error,
            output_tail=output_tail,
            log_file=log_file,
        )


class WorkflowSummary(BaseModel):
    workflow_id: str
    workflow: str
    status: str
    requested_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, workflow: Workflow) -> WorkflowSummary:
        return cls(
            workflow_id=workflow.id,
            workflow=workflow.name,
            status=workflow.status,
            requested_by=workflow.requested_by,
            created_at=workflow.created_at,
            finished_at=workflow.finished_at,
        )


class WorkflowView(WorkflowSummary):
    params: dict[str, Any]
    started_at: datetime | None
    counts: dict[str, int] = Field(description="Repo runs by status.")
    runs: list[RunView]

    @classmethod
    def with_runs(cls, workflow: Workflow, runs: list[RepoRun]) -> WorkflowView:
        views = [RunView.of(r) for r in runs]
        counts: dict[str, int] = {}
        for view in views:
            counts[view.status] = counts.get(view.status, 0) + 1
        return cls(
            **WorkflowSummary.of(workflow).model_dump(),
            params=workflow.params,
            started_at=workflow.started_at,
            counts=counts,
            runs=views,
        )

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in ("queued", "running"))


class WorkflowPage(BaseModel):
    workflows: list[WorkflowSummary]
    next_cursor: str | None


class SearchHit(BaseModel):
    workflow_id: str
    workflow: str
    repo: str
    status: str
    excerpt: str


class SearchResult(BaseModel):
    hits: list[SearchHit]


class DurationStats(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class WorkflowStats(BaseModel):
    workflow: str
    workflows_by_status: dict[str, int]
    repo_runs_by_status: dict[str, int]
    run_duration_seconds: DurationStats


class WorkflowStatistics(BaseModel):
    workflows: list[WorkflowStats]


class DeadLetterView(BaseModel):
    dead_letter_id: str
    run_id: str
    workflow_id: str
    workflow: str
    repo: str
    status: str
    attempts: int
    retries: int
    last_error: str | None
    inputs: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entry: DeadLetter) -> DeadLetterView:
        return cls(
            dead_letter_id=entry.id,
            run_id=entry.run_id,
            workflow_id=entry.workflow_id,
            workflow=entry.workflow_name,
            repo=entry.repo,
            status=entry.status,
            attempts=entry.attempts,
            retries=entry.retries,
            last_error=entry.last_error,
            inputs=entry.inputs,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
        )


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterView]


class ParamView(BaseModel):
    name: str
    type: str
    required: bool
    description: str
    pattern: str | None


class WorkflowDefinitionView(BaseModel):
    name: str
    description: str
    admin_only: bool
    timeout_seconds: float
    max_attempts: int
    params: list[ParamView]
