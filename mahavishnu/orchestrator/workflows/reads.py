"""Read queries over the workflow tables, each narrowed to what the caller's tag scope covers.

A scoped caller (a token with tags) sees a repo run when the run's repository
carried one of its tags when the workflow was triggered (`repo_runs.repo_tags`),
a workflow when at least one of its runs is in scope, and a dead letter when
its run is. The narrowing happens in SQL, so pages, limits and counts are
computed over what the caller may see, never trimmed afterwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVarTuple

from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows.models import DeadLetter, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.states import FINAL_RUN_STATUSES
from mahavishnu.platform.auth import Principal

__all__ = [
    "dead_letter_in_scope",
    "list_dead_letters",
    "list_workflows",
    "run_durations",
    "run_in_scope",
    "search_runs",
    "workflow_counts",
]


def run_in_scope(principal: Principal, dialect: str) -> ColumnElement[bool] | None:
    """A condition on `repo_runs` rows: the run's repository tags meet the caller's tags.
    None for an unscoped caller (no condition at all, so admins' queries stay as they were)."""
    if not principal.tags:
        return None
    elements = func.json_array_elements_text if dialect == "postgresql" else func.json_each
    tags = elements(RepoRun.repo_tags).table_valued("value")
    return select(tags.c.value).where(tags.c.value.in_(sorted(principal.tags))).exists()


def _workflow_in_scope(principal: Principal, dialect: str) -> ColumnElement[bool] | None:
    runs = run_in_scope(principal, dialect)
    if runs is None:
        return None
    return select(RepoRun.id).where(RepoRun.workflow_id == Workflow.id, runs).exists()


def dead_letter_in_scope(principal: Principal, dialect: str) -> ColumnElement[bool] | None:
    runs = run_in_scope(principal, dialect)
    if runs is None:
        return None
    return select(RepoRun.id).where(RepoRun.id == DeadLetter.run_id, runs).exists()


_Columns = TypeVarTuple("_Columns")


def _narrowed(query: Select[*_Columns], condition: ColumnElement[bool] | None) -> Select[*_Columns]:
    return query if condition is None else query.where(condition)


async def list_workflows(
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    *,
    status: str | None,
    name: str | None,
    since: datetime | None,
    before_id: str | None,
    limit: int,
) -> list[Workflow]:
    """Newest first; `before_id` continues a previous page (ids sort by creation time)."""
    query = _narrowed(select(Workflow), _workflow_in_scope(principal, dialect))
    if status:
        query = query.where(Workflow.status == status)
    if name:
        query = query.where(Workflow.name == name)
    if since:
        query = query.where(Workflow.created_at >= since)
    if before_id:
        query = query.where(Workflow.id < before_id)
    return list((await session.scalars(query.order_by(Workflow.id.desc()).limit(limit))).all())


async def search_runs(
    session: AsyncSession, principal: Principal, dialect: str, query_text: str, limit: int
) -> list[RepoRun]:
    """Full-text search over output tails and errors (FTS5 on SQLite, tsvector on PostgreSQL)."""
    if dialect == "postgresql":
        document = func.to_tsvector(
            text("'simple'"), func.coalesce(RepoRun.output_tail, "") + " " + func.coalesce(RepoRun.error, "")
        )
        condition = document.op("@@")(func.plainto_tsquery(text("'simple'"), query_text))
        query = select(RepoRun).where(condition)
    else:
        terms = " ".join('"' + word.replace('"', '""') + '"' for word in query_text.split())
        if not terms:
            return []
        matching = text("SELECT rowid FROM repo_runs_fts WHERE repo_runs_fts MATCH :terms").bindparams(
            terms=terms
        )
        query = select(RepoRun).where(text("repo_runs.rowid IN (" + str(matching) + ")")).params(terms=terms)
    query = _narrowed(query, run_in_scope(principal, dialect))
    return list((await session.scalars(query.order_by(RepoRun.created_at.desc()).limit(limit))).all())


async def run_durations(
    session: AsyncSession, principal: Principal, dialect: str
) -> list[tuple[str, str, float | None]]:
    query = select(RepoRun.workflow_name, RepoRun.status, RepoRun.duration_seconds).where(
        RepoRun.status.in_(FINAL_RUN_STATUSES)
    )
    rows = await session.execute(_narrowed(query, run_in_scope(principal, dialect)))
    return [(r[0], r[1], r[2]) for r in rows.all()]


async def workflow_counts(
    session: AsyncSession, principal: Principal, dialect: str
) -> list[tuple[str, str, int]]:
    query = _narrowed(
        select(Workflow.name, Workflow.status, func.count()), _workflow_in_scope(principal, dialect)
    )
    rows = await session.execute(query.group_by(Workflow.name, Workflow.status))
    return [(r[0], r[1], int(r[2])) for r in rows.all()]


async def list_dead_letters(
    session: AsyncSession, principal: Principal, dialect: str, *, include_resolved: bool, limit: int
) -> list[DeadLetter]:
    query = _narrowed(select(DeadLetter), dead_letter_in_scope(principal, dialect))
    if not include_resolved:
        query = query.where(DeadLetter.status != "resolved")
    return list((await session.scalars(query.order_by(DeadLetter.created_at.desc()).limit(limit))).all())
