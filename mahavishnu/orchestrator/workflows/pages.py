"""The paged answers: each list-shaped view of `views.py` with its `next_cursor` and `total`."""

from __future__ import annotations

from pydantic import Field

from mahavishnu.orchestrator.workflows.models import Workflow
from mahavishnu.orchestrator.workflows.views import (
    DeadLetterPage,
    RunView,
    SearchResult,
    WorkflowPage,
    WorkflowStatistics,
    WorkflowSummary,
    WorkflowView,
)

__all__ = ["DeadLetterList", "SearchPage", "StatisticsPage", "WorkflowList", "WorkflowStatusPage"]

NEXT = "Pass back as `cursor` (with the same filters) for the next page; null on the last page."


class WorkflowStatusPage(WorkflowView):
    """A workflow with its runs' counts by status (every run in scope) and one page of its runs
    (by repository name), so watching a workflow of thousands of repositories stays cheap."""

    total: int = Field(description="Repo runs in scope matching the status filter, in all pages.")
    next_cursor: str | None = Field(description=NEXT)

    @classmethod
    def of_page(
        cls,
        workflow: Workflow,
        counts: dict[str, int],
        runs: list[RunView],
        *,
        total: int,
        next_cursor: str | None,
    ) -> WorkflowStatusPage:
        return cls(
            **WorkflowSummary.of(workflow).model_dump(),
            params=workflow.params,
            started_at=workflow.started_at,
            counts=counts,
            runs=runs,
            total=total,
            next_cursor=next_cursor,
        )

    @property
    def runs_in_scope(self) -> int:
        """Every run the caller sees, whatever the page and its filter."""
        return sum(self.counts.values())


class WorkflowList(WorkflowPage):
    total: int = Field(description="Workflows matching the filters, in all pages.")


class DeadLetterList(DeadLetterPage):
    next_cursor: str | None = Field(description=NEXT)
    total: int = Field(description="Dead letters matching the filter, in all pages.")


class SearchPage(SearchResult):
    next_cursor: str | None = Field(description=NEXT)
    total: int = Field(description="Repo runs matching the search, in all pages.")


class StatisticsPage(WorkflowStatistics):
    next_cursor: str | None = Field(description=NEXT)
    total: int = Field(description="Workflow names with statistics, in all pages.")
