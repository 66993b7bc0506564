"""Read queries over the workflow tables, each narrowed to what the caller's tag scope covers.

A scoped caller (a token with tags) sees a repo run when the run's repository
carried one of its tags when the workflow was triggered (`repo_runs.repo_tags`),
a workflow when at least one of its runs is in scope, and a dead letter when
its run is. The narrowing happens in SQL, so pages, limits and counts are
computed over what the caller may see, never trimmed afterwards.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from mahavishnu.orchestrator.workflows import search
from mahavishnu.orchestrator.workflows.models import DeadLetter, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.states import FINAL_RUN_STATUSES, RunStatus
from mahavishnu.orchestrator.workflows.views import RUN_VIEW_COLUMNS, RunView
from mahavishnu.platform.auth import Principal

__all__ = [
    "Page",
    "dead_letter_in_scope",
    "ids_starting",
    "list_dead_letters",
    "list_workflows",
    "run_counts",
    "run_durations",
    "run_in_scope",
    "run_page",
    "search_runs",
    "shown_status",
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
T = TypeVar("T")
IdColumn = InstrumentedAttribute[str]


def _narrowed(query: Select[*_Columns], condition: ColumnElement[bool] | None) -> Select[*_Columns]:
    return query if condition is None else query.where(condition)


Page = tuple[list[T], int]
"""One page's rows (one more than asked when there is more) and how many match in all pages."""


async def _page(
    session: AsyncSession,
    query: Select[T],
    key: InstrumentedAttribute[str],
    *,
    after: str | None,
    limit: int,
    descending: bool = False,
) -> Page[T]:
    """`limit + 1` rows of `query` in `key` order after `after`, and the count of all its rows."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return await _rows(session, query, key, after=after, limit=limit, descending=descending), int(total or 0)


async def _rows(
    session: AsyncSession,
    query: Select[T],
    key: InstrumentedAttribute[str],
    *,
    after: str | None,
    limit: int | None,
    descending: bool = False,
) -> list[T]:
    """`limit + 1` rows of `query` in `key` order after `after` (one more than a page says
    whether there is more); `limit` None: every row (in-process callers; answers are bounded)."""
    if after is not None:
        query = query.where(key < after if descending else key > after)
    query = query.order_by(key.desc() if descending else key)
    if limit is not None:
        query = query.limit(limit + 1)
    return list((await session.scalars(query)).all())


async def list_workflows(
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    *,
    status: str | None,
    name: str | None,
    since: datetime | None,
    after: str | None,
    limit: int,
) -> Page[Workflow]:
    """Newest first; `after` continues a previous page (ids sort by creation time)."""
    query = _narrowed(select(Workflow), _workflow_in_scope(principal, dialect))
    if status:
        query = query.where(Workflow.status == status)
    if name:
        query = query.where(Workflow.name == name)
    if since:
        query = query.where(Workflow.created_at >= since)
    return await _page(session, query, Workflow.id, after=after, limit=limit, descending=True)


shown_status = case(
    (and_(RepoRun.status == RunStatus.RUNNING, RepoRun.started_at.is_(None)), RunStatus.QUEUED.value),
    else_=RepoRun.status,
)
"""A run's status as callers see it (`RunView.of`): one an engine holds before it started is queued."""


async def run_counts(
    session: AsyncSession, principal: Principal | None, dialect: str, workflow_id: str
) -> dict[str, int]:
    """A workflow's runs by status, those in the caller's scope (all of them for None)."""
    query = select(shown_status, func.count()).where(RepoRun.workflow_id == workflow_id)
    if principal is not None:
        query = _narrowed(query, run_in_scope(principal, dialect))
    rows = await session.execute(query.group_by(shown_status))
    return {str(r[0]): int(r[1]) for r in rows.all()}


async def run_page(
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    workflow_id: str,
    *,
    status: str | None,
    after: str | None,
    limit: int | None,
) -> list[RunView]:
    """A workflow's runs in scope by repository name, optionally only those with `status`
    (their total is in `run_counts`, which a status answer reads anyway). Only the viewed
    columns are read, without ORM objects: a watcher asks for this page many times a second."""
    query = _narrowed(
        select(*RUN_VIEW_COLUMNS).where(RepoRun.workflow_id == workflow_id), run_in_scope(principal, dialect)
    )
    if status is not None:
        query = query.where(shown_status == status)
    if after is not None:
        query = query.where(RepoRun.repo > after)
    query = query.order_by(RepoRun.repo)
    if limit is not None:
        query = query.limit(limit + 1)
    return [RunView.of(row) for row in await session.execute(query)]


async def search_runs(
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    phrases: list[str],
    *,
    after: str | None,
    limit: int,
) -> Page[RepoRun]:
    """Runs whose output or error holds every phrase (`search.py`), newest first."""
    query = _narrowed(
        select(RepoRun).where(search.matches(dialect, phrases)), run_in_scope(principal, dialect)
    )
    return await _page(session, query, RepoRun.id, after=after, limit=limit, descending=True)


async def ids_starting(
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    key: IdColumn,
    prefixes: Collection[str],
    limit: int,
) -> list[str]:
    """IDs in the caller's scope that start with one of `prefixes` (normalised: hex digits and
    dashes, so no LIKE wildcard), in order: prefix resolution and short IDs."""
    scope = (
        _workflow_in_scope(principal, dialect)
        if key is Workflow.id
        else dead_letter_in_scope(principal, dialect)
    )
    starts = or_(*(key.startswith(p, autoescape=True) for p in prefixes))
    query = _narrowed(select(key).where(starts), scope).order_by(key).limit(limit)
    return list((await session.scalars(query)).all())


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
    session: AsyncSession,
    principal: Principal,
    dialect: str,
    *,
    include_resolved: bool,
    after: str | None,
    limit: int,
) -> Page[DeadLetter]:
    """Newest first (ids sort by filing time)."""
    query = _narrowed(select(DeadLetter), dead_letter_in_scope(principal, dialect))
    if not include_resolved:
        query = query.where(DeadLetter.status != "resolved")
    return await _page(session, query, DeadLetter.id, after=after, limit=limit, descending=True)
