"""Workflow use cases: what the MCP tools and the CLI both call. No HTTP or MCP here.

Each method takes the calling `Principal`: repositories outside its tag
scope are invisible (reported as not found), and roles gate what it may do.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.manifest import ManifestStore, Repo
from mahavishnu.orchestrator.workflows import reads, records
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition, render_argv, validate_params
from mahavishnu.orchestrator.workflows.models import DeadLetter, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.ports import WorkflowEngine
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus
from mahavishnu.orchestrator.workflows.views import (
    DeadLetterPage,
    DeadLetterView,
    DurationStats,
    ParamView,
    SearchHit,
    SearchResult,
    WorkflowDefinitionView,
    WorkflowPage,
    WorkflowStatistics,
    WorkflowStats,
    WorkflowSummary,
    WorkflowView,
)
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import current_traceparent, get_logger

__all__ = ["WorkflowService"]

log = get_logger("mahavishnu.workflows")
MAX_PAGE = 200


class WorkflowService:
    def __init__(
        self,
        db: Database,
        manifest: ManifestStore,
        definitions: Mapping[str, WorkflowDefinition],
        engine: WorkflowEngine | None = None,
    ) -> None:
        self._db = db
        self._manifest = manifest
        self._definitions = definitions
        self._engine = engine

    # --- definitions ----------------------------------------------------------
    def definitions(self, principal: Principal) -> list[WorkflowDefinitionView]:
        return [
            WorkflowDefinitionView(
                name=name,
                description=d.description,
                admin_only=d.admin_only,
                timeout_seconds=d.timeout_seconds,
                max_attempts=d.retry.max_attempts,
                params=[
                    ParamView(
                        name=p, type=s.type, required=s.required, description=s.description, pattern=s.pattern
                    )
                    for p, s in d.params.items()
                ],
            )
            for name, d in sorted(self._definitions.items())
            if not d.admin_only or principal.has_role("admin")
        ]

    def _definition(self, principal: Principal, name: str) -> WorkflowDefinition:
        """The definition to run; an admin-only one is as unknown to a non-admin as a missing one,
        and the error names only the workflows the caller could run."""
        definition = self._definitions.get(name)
        if definition is None or (definition.admin_only and not principal.has_role("admin")):
            known = ", ".join(d.name for d in self.definitions(principal)) or "none"
            raise NotFoundError(f"no workflow named {_shown(name)}; known workflows: {known}")
        return definition

    # --- trigger --------------------------------------------------------------
    async def trigger(
        self,
        principal: Principal,
        workflow: str,
        *,
        tag: str | None = None,
        role: str | None = None,
        repos: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> WorkflowSummary:
        """Validate everything, store the workflow and one queued run per repo, and return at once."""
        principal.require_role("operator")
        definition = self._definition(principal, workflow)
        values = validate_params(definition, params or {})
        targets = self._select(principal, tag=tag, role=role, names=repos)
        argv = render_argv(definition, values)
        now = datetime.now(UTC)
        traceparent = current_traceparent()
        record = Workflow(
            id=new_id(),
            name=workflow,
            status=WorkflowStatus.QUEUED,
            params=values,
            selector={"tag": tag, "role": role, "repos": list(repos) if repos else None},
            requested_by=principal.subject,
            cancel_requested=False,
            created_at=now,
            trace_parent=traceparent,
        )
        runs = [
            {
                "id": new_id(),
                "workflow_id": record.id,
                "workflow_name": workflow,
                "repo": repo.name,
                "repo_path": str(repo.path),
                "repo_tags": list(repo.tags),
                "argv": argv,
                "status": RunStatus.QUEUED.value,
                "attempt": 0,
                "max_attempts": definition.retry.max_attempts,
                "created_at": now,
                "trace_parent": traceparent,
            }
            for repo in targets
        ]
        async with self._db.session() as session:
            await records.add_workflow(session, record, runs)
        log.info(
            "workflow_queued", workflow_id=record.id, workflow=workflow, repos=len(runs), by=principal.subject
        )
        if self._engine is not None:
            self._engine.submit(record.id)
        return WorkflowSummary.of(record)

    def _select(
        self, principal: Principal, *, tag: str | None, role: str | None, names: Sequence[str] | None
    ) -> list[Repo]:
        manifest = self._manifest.manifest
        if names:
            found: list[Repo] = []
            missing: list[str] = []
            for name in dict.fromkeys(names):
                repo = manifest.find(name)
                if repo is None or not principal.can_see(repo.tags):
                    missing.append(name)
                else:
                    found.append(repo)
            if missing:
                raise NotFoundError(f"no repository named {_listed(missing)}")
            candidates = [
                r for r in found if (tag is None or tag in r.tags) and (role is None or r.role == role)
            ]
        else:
            candidates = [r for r in manifest.filter(tag=tag, role=role) if principal.can_see(r.tags)]
        if not candidates:
            raise InvalidArgumentError("no repositories match the given tag, role and names")
        absent = [r.name for r in candidates if not Path(r.path).is_dir()]
        if absent:
            raise InvalidArgumentError(f"repository folder missing on disk: {_listed(absent)}")
        return candidates

    async def until_closed(self, workflow_id: str) -> None:
        """Return once this process's engine closes the workflow; without a local engine,
        never. Callers bound the wait and read the status, which is the truth either way."""
        if self._engine is None:
            await asyncio.Event().wait()
        else:
            await self._engine.until_closed(workflow_id)

    # --- read -----------------------------------------------------------------
    async def status(self, principal: Principal, workflow_id: str) -> WorkflowView:
        """A workflow and its runs in the caller's scope. Visibility follows the token's tags only:
        who requested a workflow widens nothing (another token may carry the same subject)."""
        workflow, visible, _ = await self._scoped(principal, workflow_id)
        return WorkflowView.with_runs(workflow, visible)

    async def _scoped(self, principal: Principal, workflow_id: str) -> tuple[Workflow, list[RepoRun], int]:
        """The workflow, its runs the caller may see, and how many runs it has in all."""
        async with self._db.session() as session:
            workflow = await session.get(Workflow, workflow_id)
            query = select(RepoRun).where(RepoRun.workflow_id == workflow_id).order_by(RepoRun.repo)
            runs = list((await session.scalars(query)).all()) if workflow else []
        visible = [r for r in runs if principal.can_see(r.repo_tags)]
        if workflow is None or not visible:
            raise NotFoundError(f"no workflow {_shown(workflow_id)}")
        return workflow, visible, len(runs)

    async def list(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        if status is not None and status not in {s.value for s in WorkflowStatus}:
            raise InvalidArgumentError(f"status must be one of {', '.join(s.value for s in WorkflowStatus)}")
        since_at = _parse_since(since)
        before = _decode_cursor(cursor) if cursor else None
        async with self._db.session() as session:
            rows = await reads.list_workflows(
                session,
                principal,
                self._db.dialect,
                status=status,
                name=workflow,
                since=since_at,
                before_id=before,
                limit=limit + 1,
            )
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1].id) if len(rows) > limit and page else None
        return WorkflowPage(workflows=[WorkflowSummary.of(w) for w in page], next_cursor=next_cursor)

    async def search(self, principal: Principal, text: str, limit: int = 20) -> SearchResult:
        if not text.strip():
            raise InvalidArgumentError("search text is empty")
        async with self._db.session() as session:
            runs = await reads.search_runs(session, principal, self._db.dialect, text, limit)
        hits = [
            SearchHit(
                workflow_id=r.workflow_id,
                workflow=r.workflow_name,
                repo=r.repo,
                status=r.status,
                excerpt=_excerpt(f"{r.error or ''}\n{r.output_tail or ''}", text),
            )
            for r in runs
        ]
        return SearchResult(hits=hits)

    async def statistics(self, principal: Principal) -> WorkflowStatistics:
        async with self._db.session() as session:
            counts = await reads.workflow_counts(session, principal, self._db.dialect)
            durations = await reads.run_durations(session, principal, self._db.dialect)
        names = sorted({n for n, _, _ in counts} | {n for n, _, _ in durations})
        stats = []
        for name in names:
            by_status = {s: c for n, s, c in counts if n == name}
            runs_by_status: dict[str, int] = {}
            seconds = []
            for n, s, d in durations:
                if n == name:
                    runs_by_status[s] = runs_by_status.get(s, 0) + 1
                    if d is not None:
                        seconds.append(d)
            stats.append(
                WorkflowStats(
                    workflow=name,
                    workflows_by_status=by_status,
                    repo_runs_by_status=runs_by_status,
                    run_duration_seconds=_percentiles(seconds),
                )
            )
        return WorkflowStatistics(workflows=stats)

    # --- change ---------------------------------------------------------------
    async def cancel(self, principal: Principal, workflow_id: str) -> WorkflowView:
        """Stop queued runs now, and running ones (their process groups) within seconds.

        A cancel stops the whole workflow, so the caller's scope must cover all of it: a
        workflow reaching repositories outside the scope is refused (its runs there are not
        the caller's to stop), and one entirely outside it is not found."""
        principal.require_role("operator")
        _, visible, total = await self._scoped(principal, workflow_id)
        if len(visible) < total:
            raise PermissionDeniedError(
                "this workflow also runs in repositories outside your tag scope; "
                "cancelling it needs a token whose scope covers all of them"
            )
        now = datetime.now(UTC)
        closed: list[records.Closed] = []
        async with self._db.session() as session:
            workflow = await session.get(Workflow, workflow_id)
            assert workflow is not None
            if workflow.finished_at is None:
                workflow.cancel_requested = True
                await records.cancel_queued(session, workflow_id, now)
                closed = await records.finalize_workflows(session, {workflow_id}, now)
        if self._engine is not None:
            self._engine.report_closed(closed)
            self._engine.cancel(workflow_id)
        log.info("workflow_cancel_requested", workflow_id=workflow_id, by=principal.subject)
        return await self.status(principal, workflow_id)

    async def heal(self, principal: Principal) -> int:
        """Healing requeues orphans of every scope, so it needs an admin with no tag scope."""
        _require_unscoped_admin(principal, "healing orphaned runs")
        if self._engine is None:
            raise InvalidArgumentError("no engine runs in this process")
        return await self._engine.heal()

    # --- dead letters -----------------------------------------------------------
    async def dead_letters(self, principal: Principal, *, include_resolved: bool = False) -> DeadLetterPage:
        principal.require_role("admin")
        async with self._db.session() as session:
            rows = await reads.list_dead_letters(
                session, principal, self._db.dialect, include_resolved=include_resolved, limit=MAX_PAGE
            )
        return DeadLetterPage(dead_letters=[DeadLetterView.of(r) for r in rows])

    async def dead_letter(self, principal: Principal, dead_letter_id: str) -> DeadLetterView:
        principal.require_role("admin")
        async with self._db.session() as session:
            entry = await self._scoped_dead_letter(session, principal, dead_letter_id)
        return DeadLetterView.of(entry)

    async def _scoped_dead_letter(
        self, session: AsyncSession, principal: Principal, dead_letter_id: str
    ) -> DeadLetter:
        query = select(DeadLetter).where(DeadLetter.id == dead_letter_id)
        scope = reads.dead_letter_in_scope(principal, self._db.dialect)
        entry = await session.scalar(query if scope is None else query.where(scope))
        if entry is None:
            raise NotFoundError(f"no dead letter {_shown(dead_letter_id)}")
        return entry

    async def retry_dead_letter(self, principal: Principal, dead_letter_id: str) -> DeadLetterView:
        """Queue the run again as one more attempt of the same workflow; it leaves the DLQ on success."""
        principal.require_role("admin")
        now = datetime.now(UTC)
        async with self._db.session() as session:
            entry = await self._scoped_dead_letter(session, principal, dead_letter_id)
            if entry.status != "open":
                raise InvalidArgumentError(f"dead letter {dead_letter_id!r} is {entry.status}, not open")
            run = await session.get(RepoRun, entry.run_id)
            workflow = await session.get(Workflow, entry.workflow_id)
            if run is None or workflow is None:
                raise NotFoundError(f"the run behind dead letter {dead_letter_id!r} is gone")
            run.status, run.max_attempts = RunStatus.QUEUED, run.attempt + 1
            run.finished_at, run.next_attempt_at, run.error = None, None, None
            workflow.status, workflow.finished_at = WorkflowStatus.RUNNING, None
            entry.status, entry.retries, entry.updated_at = "retrying", entry.retries + 1, now
            view, workflow_id = DeadLetterView.of(entry), entry.workflow_id
        if self._engine is not None:
            self._engine.submit(workflow_id)
        log.info("dead_letter_retried", dead_letter_id=dead_letter_id, by=principal.subject)
        return view

    async def purge_dead_letters(self, principal: Principal, *, resolved_only: bool = True) -> int:
        principal.require_role("admin")
        query = delete(DeadLetter)
        if resolved_only:
            query = query.where(DeadLetter.status == "resolved")
        else:
            query = query.where(DeadLetter.status != "retrying")
        scope = reads.dead_letter_in_scope(principal, self._db.dialect)
        if scope is not None:
            query = query.where(scope)
        async with self._db.session() as session:
            result = await session.execute(query)
        return int(getattr(result, "rowcount", 0) or 0)


def _require_unscoped_admin(principal: Principal, what: str) -> None:
    principal.require_role("admin")
    if principal.tags:
        raise PermissionDeniedError(f"{what} spans every tag scope; it needs an admin token without tags")


def _shown(value: str, limit: int = 80) -> str:
    """A caller's value quoted for an error message, cut so an answer never echoes a huge input."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def _listed(names: Sequence[str], most: int = 5) -> str:
    """A few names and a count of the rest: an error answer stays small whatever was asked."""
    shown = ", ".join(_shown(n, 64) for n in names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError:
        raise InvalidArgumentError(
            "since must be an ISO 8601 date or time, e.g. 2026-11-27T00:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError("cursor is not one this server issued") from None
    if len(value) != 36:
        raise InvalidArgumentError("cursor is not one this server issued")
    return value


def _percentiles(values: list[float]) -> DurationStats:
    if not values:
        return DurationStats(p50=None, p95=None, p99=None)
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 4)

    return DurationStats(p50=pick(0.50), p95=pick(0.95), p99=pick(0.99))


def _excerpt(text: str, query: str, width: int = 160) -> str:
    lowered = text.lower()
    positions = [lowered.find(word.lower()) for word in query.split()]
    found = [p for p in positions if p >= 0]
    start = max(0, (min(found) if found else 0) - width // 4)
    return text[start : start + width].strip()
