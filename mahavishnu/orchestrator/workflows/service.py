"""Workflow use cases: what the MCP tools and the CLI both call. No HTTP or MCP here.

Each method takes the calling `Principal`: repositories outside its tag
scope are invisible (reported as not found), and roles gate what it may do.
"""

import asyncio
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mahavishnu.orchestrator.manifest import Repo
from mahavishnu.orchestrator.workflows import idempotency, insights, reads, records, search
from mahavishnu.orchestrator.workflows.dead_letters import DeadLetterCases
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition, render_argv, validate_params
from mahavishnu.orchestrator.workflows.models import Workflow
from mahavishnu.orchestrator.workflows.pages import (
    SearchPage,
    StatisticsPage,
    WorkflowList,
    WorkflowStatusPage,
)
from mahavishnu.orchestrator.workflows.service_base import listed, shown
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus
from mahavishnu.orchestrator.workflows.views import ParamView, WorkflowDefinitionView, WorkflowSummary
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import current_traceparent, get_logger
from mahavishnu.platform.paging import MAX_PAGE, Cursor, check_limit

__all__ = ["MAX_PAGE", "WorkflowService"]

log = get_logger("mahavishnu.workflows")


class WorkflowService(DeadLetterCases):
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
            raise NotFoundError(f"no workflow named {shown(name)}; known workflows: {known}")
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
        idempotency_key: str | None = None,
    ) -> WorkflowSummary:
        """Validate everything, store the workflow and one queued run per repo, and return at once.

        With `idempotency_key`, a trigger this caller made before with that key and the same
        arguments is answered with its workflow instead of a new one (other arguments: a
        conflict); the database's unique index settles concurrent calls (`idempotency.py`)."""
        principal.require_role("operator")
        key = idempotency.check_key(idempotency_key)
        request = idempotency.fingerprint(principal, workflow, tag=tag, role=role, repos=repos, params=params)
        if key is not None and (found := await self._earlier(principal, key, request)) is not None:
            return found
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
            idempotency_key=key,
            request_fingerprint=request if key is not None else None,
        )
        runs = _queued_runs(record, targets, argv, definition.retry.max_attempts)
        try:
            async with self._db.session() as session:
                await records.add_workflow(session, record, runs)
        except IntegrityError:
            # Another call with this key committed first (here or on another replica).
            if key is None or (found := await self._earlier(principal, key, request)) is None:
                raise
            return found
        log.info(
            "workflow_queued", workflow_id=record.id, workflow=workflow, repos=len(runs), by=principal.subject
        )
        if self._engine is not None:
            self._engine.submit(record.id)
        return WorkflowSummary.of(record)

    async def _earlier(self, principal: Principal, key: str, request: str) -> WorkflowSummary | None:
        async with self._db.session() as session:
            found = await idempotency.earlier(session, principal, key, request)
        if found is not None:
            log.info("workflow_trigger_replayed", workflow_id=found.id, by=principal.subject)
        return WorkflowSummary.of(found) if found is not None else None

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
                raise NotFoundError(f"no repository named {listed(missing)}")
            candidates = [
                r for r in found if (tag is None or tag in r.tags) and (role is None or r.role == role)
            ]
        else:
            candidates = [r for r in manifest.filter(tag=tag, role=role) if principal.can_see(r.tags)]
        if not candidates:
            raise InvalidArgumentError("no repositories match the given tag, role and names")
        absent = [r.name for r in candidates if not Path(r.path).is_dir()]
        if absent:
            raise InvalidArgumentError(f"repository folder missing on disk: {listed(absent)}")
        return candidates

    async def until_closed(self, workflow_id: str) -> None:
        """Return once this process's engine closes the workflow; without a local engine,
        never. Callers bound the wait and read the status, which is the truth either way."""
        if self._engine is None:
            await asyncio.Event().wait()
        else:
            await self._engine.until_closed(workflow_id)

    # --- read -----------------------------------------------------------------
    async def resolve_workflow_id(self, principal: Principal, text: str) -> str:
        """The full ID of the workflow in the caller's scope that `text` is a unique prefix of
        (at least 4 characters, like git; a whole ID is returned as is). NotFoundError when none
        matches, InvalidArgumentError naming a few candidates when several do."""
        return await self._resolve(principal, text, Workflow.id, "workflow")

    async def short_workflow_ids(self, principal: Principal, ids: Collection[str]) -> dict[str, str]:
        """Each ID mapped to its shortest prefix (8 characters or more) unique in the caller's
        scope, for tables: what they show, `resolve_workflow_id` takes back."""
        return await self._short(principal, ids, Workflow.id)

    async def status(
        self,
        principal: Principal,
        workflow_id: str,
        *,
        run_status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        shared: bool = False,
    ) -> WorkflowStatusPage:
        """A workflow, its runs' counts by status and a page of its runs (by repository name,
        only those with `run_status` if given), all in the caller's scope. `limit` 0 gives the
        counts alone; None every run (in-process callers only: client answers are bounded).
        `shared`: a running workflow may be answered from a page at most
        `STATUS_CACHE_SECONDS` old (see `status_cache.py`): for watchers, never for waits.

        Visibility follows the token's tags only: who requested a workflow widens nothing
        (another token may carry the same subject)."""
        if limit is not None:
            check_limit(limit, least=0)
        if run_status is not None and run_status not in {s.value for s in RunStatus}:
            raise InvalidArgumentError(f"status must be one of {', '.join(s.value for s in RunStatus)}")
        workflow_id = await self.resolve_workflow_id(principal, workflow_id)
        key = (principal.tags, run_status, limit, cursor)
        if shared and (page := self._status_cache.get(workflow_id, key)) is not None:
            if not await self._closed(workflow_id):
                return page
            self._status_cache.forget(workflow_id)  # closed, maybe by another engine: read it whole
        page = await self._read_status(principal, workflow_id, run_status, limit, cursor)
        if shared:
            self._status_cache.put(workflow_id, key, page)
        return page

    async def _closed(self, workflow_id: str) -> bool:
        """Whether the workflow has closed: one indexed read, what a shared page must not hide."""
        async with self._db.session() as session:
            finished = await session.scalar(select(Workflow.finished_at).where(Workflow.id == workflow_id))
        return finished is not None

    async def _read_status(
        self,
        principal: Principal,
        workflow_id: str,
        run_status: str | None,
        limit: int | None,
        cursor: str | None,
    ) -> WorkflowStatusPage:
        pages = Cursor("runs", workflow_id, run_status)
        after = pages.decode(cursor)
        async with self._db.session() as session:
            workflow = await session.get(Workflow, workflow_id)
            counts = await reads.run_counts(session, principal, self._db.dialect, workflow_id)
            if workflow is None or not counts:
                raise NotFoundError(f"no workflow {shown(workflow_id)}")
            runs = await reads.run_page(
                session, principal, self._db.dialect, workflow_id, status=run_status, after=after, limit=limit
            )
        return WorkflowStatusPage.of_page(
            workflow,
            counts,
            runs[:limit],
            total=counts.get(run_status, 0) if run_status else sum(counts.values()),
            next_cursor=None if limit is None else pages.after(runs, limit, lambda r: r.repo),
        )

    async def list(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowList:
        """Workflows in the caller's scope, newest first, a page at a time."""
        check_limit(limit)
        if status is not None and status not in {s.value for s in WorkflowStatus}:
            raise InvalidArgumentError(f"status must be one of {', '.join(s.value for s in WorkflowStatus)}")
        since_at = _parse_since(since)
        pages = Cursor("workflows", status, workflow, since_at)
        async with self._db.session() as session:
            rows, total = await reads.list_workflows(
                session,
                principal,
                self._db.dialect,
                status=status,
                name=workflow,
                since=since_at,
                after=pages.decode(cursor),
                limit=limit,
            )
        return WorkflowList(
            workflows=[WorkflowSummary.of(w) for w in rows[:limit]],
            next_cursor=pages.after(rows, limit, lambda w: w.id),
            total=total,
        )

    async def search(
        self, principal: Principal, text: str, limit: int = 20, cursor: str | None = None
    ) -> SearchPage:
        """Runs whose output or error holds every word of `text` (`search.py`), newest first."""
        check_limit(limit)
        phrases = search.phrases(text)
        if not phrases:
            raise InvalidArgumentError("search text has no words (letters or digits) to look for")
        pages = Cursor("search", phrases)
        async with self._db.session() as session:
            runs, total = await reads.search_runs(
                session, principal, self._db.dialect, phrases, after=pages.decode(cursor), limit=limit
            )
        return SearchPage(
            hits=[insights.hit(r, text) for r in runs[:limit]],
            next_cursor=pages.after(runs, limit, lambda r: r.id),
            total=total,
        )

    async def statistics(
        self, principal: Principal, *, limit: int = 50, cursor: str | None = None
    ) -> StatisticsPage:
        """Per workflow name (in name order, a page at a time): counts by status and run-duration
        percentiles, over what the caller's scope covers."""
        check_limit(limit)
        pages = Cursor("statistics")
        after = pages.decode(cursor)
        async with self._db.session() as session:
            counts = await reads.workflow_counts(session, principal, self._db.dialect)
            durations = await reads.run_durations(session, principal, self._db.dialect)
        stats = insights.workflow_stats(counts, durations)
        rest = [s for s in stats if after is None or s.workflow > after]
        return StatisticsPage(
            workflows=rest[:limit],
            next_cursor=pages.after(rest, limit, lambda s: s.workflow),
            total=len(stats),
        )

    # --- change ---------------------------------------------------------------
    async def cancel(
        self, principal: Principal, workflow_id: str, *, limit: int | None = None
    ) -> WorkflowStatusPage:
        """Stop queued runs now, and running ones (their process groups) within seconds; returns
        the status with `limit` runs (as `status`).

        A cancel stops the whole workflow, so the caller's scope must cover all of it: a
        workflow reaching repositories outside the scope is refused (its runs there are not
        the caller's to stop), and one entirely outside it is not found."""
        principal.require_role("operator")
        workflow_id = await self.resolve_workflow_id(principal, workflow_id)
        now = datetime.now(UTC)
        closed: list[records.Closed] = []
        async with self._db.session() as session:
            workflow = await session.get(Workflow, workflow_id)
            visible = await reads.run_counts(session, principal, self._db.dialect, workflow_id)
            if workflow is None or not visible:
                raise NotFoundError(f"no workflow {shown(workflow_id)}")
            if visible != await reads.run_counts(session, None, self._db.dialect, workflow_id):
                raise PermissionDeniedError(
                    "this workflow also runs in repositories outside your tag scope; "
                    "cancelling it needs a token whose scope covers all of them"
                )
            if workflow.finished_at is None:
                workflow.cancel_requested = True
                await records.cancel_queued(session, workflow_id, now)
                closed = await records.finalize_workflows(session, {workflow_id}, now)
        self._status_cache.forget(workflow_id)
        if self._engine is not None:
            self._engine.report_closed(closed)
            self._engine.cancel(workflow_id)
        log.info("workflow_cancel_requested", workflow_id=workflow_id, by=principal.subject)
        return await self.status(principal, workflow_id, limit=limit)

    async def heal(self, principal: Principal) -> int:
        """Healing requeues orphans of every scope, so it needs an admin with no tag scope."""
        _require_unscoped_admin(principal, "healing orphaned runs")
        if self._engine is None:
            raise InvalidArgumentError("no engine runs in this process")
        healed = await self._engine.heal()
        self._status_cache.forget()
        return healed


def _queued_runs(
    workflow: Workflow, targets: Sequence[Repo], argv: list[str], max_attempts: int
) -> list[dict[str, Any]]:
    """One queued run per repository, as rows for one executemany."""
    return [
        {
            "id": new_id(),
            "workflow_id": workflow.id,
            "workflow_name": workflow.name,
            "repo": repo.name,
            "repo_path": str(repo.path),
            "repo_tags": list(repo.tags),
            "argv": argv,
            "status": RunStatus.QUEUED.value,
            "attempt": 0,
            "max_attempts": max_attempts,
            "created_at": workflow.created_at,
            "trace_parent": workflow.trace_parent,
        }
        for repo in targets
    ]


def _require_unscoped_admin(principal: Principal, what: str) -> None:
    principal.require_role("admin")
    if principal.tags:
        raise PermissionDeniedError(f"{what} spans every tag scope; it needs an admin token without tags")


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
