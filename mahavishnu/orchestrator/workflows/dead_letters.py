"""Dead-letter use cases: list, show, retry and purge repo runs that used up their retries.

Admins only; a scoped admin sees and acts on the dead letters of runs in its tag scope.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import reads
from mahavishnu.orchestrator.workflows.models import DeadLetter, RepoRun, Workflow
from mahavishnu.orchestrator.workflows.pages import DeadLetterList
from mahavishnu.orchestrator.workflows.service_base import ServiceBase, shown
from mahavishnu.orchestrator.workflows.states import RunStatus, WorkflowStatus
from mahavishnu.orchestrator.workflows.views import DeadLetterView
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from mahavishnu.platform.observability import get_logger
from mahavishnu.platform.paging import Cursor, check_limit

__all__ = ["DeadLetterCases"]

log = get_logger("mahavishnu.workflows")


class DeadLetterCases(ServiceBase):
    async def resolve_dead_letter_id(self, principal: Principal, text: str) -> str:
        """The full ID of the dead letter in the caller's scope that `text` is a unique prefix of
        (at least 4 characters; a whole ID is returned as is). NotFoundError when none,
        InvalidArgumentError when several match."""
        principal.require_role("admin")
        return await self._resolve(principal, text, DeadLetter.id, "dead letter")

    async def short_dead_letter_ids(self, principal: Principal, ids: Collection[str]) -> dict[str, str]:
        """Each ID mapped to its shortest prefix (8 characters or more) unique in the caller's scope."""
        principal.require_role("admin")
        return await self._short(principal, ids, DeadLetter.id)

    async def dead_letters(
        self,
        principal: Principal,
        *,
        include_resolved: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterList:
        """Newest first, a page at a time."""
        principal.require_role("admin")
        check_limit(limit)
        pages = Cursor("dead_letters", include_resolved)
        async with self._db.session() as session:
            rows, total = await reads.list_dead_letters(
                session,
                principal,
                self._db.dialect,
                include_resolved=include_resolved,
                after=pages.decode(cursor),
                limit=limit,
            )
        return DeadLetterList(
            dead_letters=[DeadLetterView.of(r) for r in rows[:limit]],
            next_cursor=pages.after(rows, limit, lambda r: r.id),
            total=total,
        )

    async def dead_letter(self, principal: Principal, dead_letter_id: str) -> DeadLetterView:
        found = await self.resolve_dead_letter_id(principal, dead_letter_id)
        async with self._db.session() as session:
            entry = await self._scoped_dead_letter(session, principal, found)
        return DeadLetterView.of(entry)

    async def _scoped_dead_letter(
        self, session: AsyncSession, principal: Principal, dead_letter_id: str
    ) -> DeadLetter:
        query = select(DeadLetter).where(DeadLetter.id == dead_letter_id)
        scope = reads.dead_letter_in_scope(principal, self._db.dialect)
        entry = await session.scalar(query if scope is None else query.where(scope))
        if entry is None:
            raise NotFoundError(f"no dead letter {shown(dead_letter_id)}")
        return entry

    async def retry_dead_letter(self, principal: Principal, dead_letter_id: str) -> DeadLetterView:
        """Queue the run again as one more attempt of the same workflow; it leaves the DLQ on success."""
        dead_letter_id = await self.resolve_dead_letter_id(principal, dead_letter_id)
        now = datetime.now(UTC)
        async with self._db.session() as session:
            entry = await self._scoped_dead_letter(session, principal, dead_letter_id)
            if entry.status != "open":
                raise InvalidArgumentError(f"dead letter {dead_letter_id!r} is {entry.status}, not open")
            run = await session.get(RepoRun, entry.run_id)
            workflow = await session.get(Workflow, entry.workflow_id)
            if run is None or workflow is None:
                raise NotFoundError(f"the run behind dead letter {dead_letter_id!r} is gone")
            self._status_cache.forget(workflow.id)
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
