"""One tenant's coding sessions: start, checkpoint, end with a hand-off, and the hand-off the
next session of the same project starts from. Narrowed to one tenant like `Memories`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, InvalidArgumentError, NotFoundError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.session_buddy.checks import label, state, text
from mahavishnu.session_buddy.models import Checkpoint, CodingSession
from mahavishnu.session_buddy.tenant_store import TenantStore
from mahavishnu.session_buddy.vault import Vault
from mahavishnu.session_buddy.views import (
    CheckpointView,
    HandOff,
    SessionDetail,
    SessionPage,
    SessionView,
    StartedSession,
)

__all__ = ["SessionLimits", "Sessions"]

SESSION = "session"
CHECKPOINT = "checkpoint"
RECENT_CHECKPOINTS = 5


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_text_chars: int
    max_state_bytes: int = 65_536


class Sessions(TenantStore):
    def __init__(
        self, db: Database, vault: Vault, limits: SessionLimits, *, tenant: str, author: str
    ) -> None:
        super().__init__(db, vault, tenant=tenant, author=author)
        self._limits = limits

    async def start(
        self, project: str, *, repo: str | None = None, goal: str | None = None
    ) -> StartedSession:
        name = label("project", project, 200)
        document = {
            "project": name,
            "repo": None if repo is None else label("repo", repo, 500),
            "goal": None if goal is None else text("goal", goal, self._limits.max_text_chars),
            "handoff": None,
        }
        token = self._project_token(name)
        async with self._db.session() as session:
            previous = await session.scalar(
                select(CodingSession)
                .where(
                    CodingSession.tenant == self.tenant,
                    CodingSession.project_token == token,
                    CodingSession.ended_at.is_not(None),
                )
                .order_by(CodingSession.ended_at.desc(), CodingSession.id.desc())
                .limit(1)
            )
            row = CodingSession(
                id=new_id(),
                tenant=self.tenant,
                project_token=token,
                seal_version=1,
                author=self._author,
                checkpoints=0,
                started_at=datetime.now(UTC),
                last_checkpoint_at=None,
                ended_at=None,
            )
            row.sealed = self._seal(row, document)
            session.add(row)
            await self._audit(session, "session.start", row.id, handed_off=previous is not None)
            return StartedSession(session=self._view(row, document), previous_handoff=self._handoff(previous))

    async def checkpoint(self, session_id: str, summary: str, saved: dict[str, Any] | None) -> CheckpointView:
        document = {
            "summary": text("summary", summary, self._limits.max_text_chars),
            "state": state("state", saved, self._limits.max_state_bytes),
        }
        async with self._db.session() as session:
            row = await self._active(session, session_id)
            now = datetime.now(UTC)
            # One statement claims the next number: two concurrent checkpoints get two numbers.
            number = await session.scalar(
                update(CodingSession)
                .where(CodingSession.id == row.id, CodingSession.tenant == self.tenant)
                .values(checkpoints=CodingSession.checkpoints + 1, last_checkpoint_at=now)
                .returning(CodingSession.checkpoints)
            )
            if number is None:
                raise NotFoundError(f"no session {session_id!r}")
            sealed = self._vault.seal(CHECKPOINT, self.tenant, f"{row.id}#{number}", 1, document)
            session.add(
                Checkpoint(
                    session_id=row.id, number=number, tenant=self.tenant, sealed=sealed, created_at=now
                )
            )
            await self._audit(session, "session.checkpoint", row.id, number=number)
        return CheckpointView(
            number=number, summary=document["summary"], state=document["state"], created_at=now
        )

    async def end(self, session_id: str, handoff: str | None) -> SessionView:
        """End the session; `handoff` is what the next session of its project will be given."""
        note = None if handoff is None else text("summary", handoff, self._limits.max_text_chars)
        async with self._db.session() as session:
            row = await self._active(session, session_id)
            document = self._open(row)
            document["handoff"] = note
            row.seal_version += 1
            row.sealed = self._seal(row, document)
            row.ended_at = datetime.now(UTC)
            await self._audit(session, "session.end", row.id)
            return self._view(row, document)

    async def get(self, session_id: str) -> SessionDetail:
        async with self._db.session() as session:
            row = await self._find(session, session_id)
            rows = await session.scalars(
                select(Checkpoint)
                .where(Checkpoint.tenant == self.tenant, Checkpoint.session_id == row.id)
                .order_by(Checkpoint.number.desc())
                .limit(RECENT_CHECKPOINTS)
            )
            await self._audit(session, "session.read", row.id)
            recent = []
            for checkpoint in rows:
                opened = self._vault.open(
                    CHECKPOINT, self.tenant, f"{row.id}#{checkpoint.number}", 1, checkpoint.sealed
                )
                recent.append(
                    CheckpointView(
                        number=checkpoint.number,
                        summary=opened["summary"],
                        state=opened["state"],
                        created_at=checkpoint.created_at,
                    )
                )
            return SessionDetail(session=self._view(row, self._open(row)), recent_checkpoints=recent)

    async def listing(
        self, *, project: str | None, active: bool | None, limit: int = 20, cursor: str | None = None
    ) -> SessionPage:
        """Newest first, narrowed to a project and to active (or ended) sessions when given."""
        check_limit(limit)
        wanted = None if project is None else self._project_token(label("project", project, 200))
        pages = Cursor("sessions", self.tenant, wanted.hex() if wanted else None, active)
        after = pages.decode(cursor)
        query = select(CodingSession).where(CodingSession.tenant == self.tenant)
        if wanted is not None:
            query = query.where(CodingSession.project_token == wanted)
        if active is not None:
            query = query.where(
                CodingSession.ended_at.is_(None) if active else CodingSession.ended_at.is_not(None)
            )
        async with self._db.session() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            if after is not None:
                query = query.where(CodingSession.id < after)
            rows = list(await session.scalars(query.order_by(CodingSession.id.desc()).limit(limit + 1)))
            views = [self._view(r, self._open(r)) for r in rows[:limit]]
            await self._audit(session, "session.list", None, returned=len(views))
        return SessionPage(
            sessions=views, total=int(total or 0), next_cursor=pages.after(rows, limit, lambda r: r.id)
        )

    # --- helpers --------------------------------------------------------------------------

    def _project_token(self, project: str) -> bytes:
        return self._vault.token(self.tenant, "project", project)

    async def _find(self, session: AsyncSession, session_id: str) -> CodingSession:
        row = None
        if isinstance(session_id, str) and 0 < len(session_id) <= 64:
            row = await session.scalar(
                select(CodingSession).where(
                    CodingSession.tenant == self.tenant, CodingSession.id == session_id
                )
            )
        if row is None:
            raise NotFoundError(f"no session {str(session_id)[:64]!r}")
        return row

    async def _active(self, session: AsyncSession, session_id: str) -> CodingSession:
        row = await self._find(session, session_id)
        if row.ended_at is not None:
            raise InvalidArgumentError(f"session {row.id} has ended; start a new one")
        return row

    def _seal(self, row: CodingSession, document: dict[str, Any]) -> bytes:
        return self._vault.seal(SESSION, self.tenant, row.id, row.seal_version, document)

    def _open(self, row: CodingSession) -> dict[str, Any]:
        return self._vault.open(SESSION, self.tenant, row.id, row.seal_version, row.sealed)

    def _handoff(self, previous: CodingSession | None) -> HandOff | None:
        if previous is None or previous.ended_at is None:
            return None
        note = self._open(previous)["handoff"]
        return (
            None
            if note is None
            else HandOff(session_id=previous.id, summary=note, ended_at=previous.ended_at)
        )

    @staticmethod
    def _view(row: CodingSession, document: dict[str, Any]) -> SessionView:
        return SessionView(
            id=row.id,
            project=document["project"],
            repo=document["repo"],
            goal=document["goal"],
            status="active" if row.ended_at is None else "ended",
            started_at=row.started_at,
            ended_at=row.ended_at,
            checkpoints=row.checkpoints,
            last_checkpoint_at=row.last_checkpoint_at,
            handoff=document["handoff"],
        )
