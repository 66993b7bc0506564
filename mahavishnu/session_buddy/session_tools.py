"""Session-Buddy's session tools: start, checkpoint, end with a hand-off, read and list, for the
caller's tenant."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.platform.paging import MAX_PAGE
from mahavishnu.session_buddy.sessions import Sessions
from mahavishnu.session_buddy.views import (
    CheckpointView,
    SessionDetail,
    SessionPage,
    SessionView,
    StartedSession,
)

__all__ = ["SessionTools"]

SessionId = Annotated[str, Field(min_length=1, max_length=64, description="The session's id.")]
Summary = Annotated[str, Field(min_length=1, max_length=1_000_000)]


class SessionTools:
    def __init__(self, sessions_for: Callable[[str, str], Sessions]) -> None:
        self._sessions_for = sessions_for

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.start_session, min_role="operator", read_only=False, title="Start a session"),
            ToolSpec(self.checkpoint, min_role="operator", read_only=False, title="Checkpoint a session"),
            ToolSpec(self.end_session, min_role="operator", read_only=False, title="End a session"),
            ToolSpec(self.get_session, title="Read a session"),
            ToolSpec(self.list_sessions, title="List sessions"),
        ]

    def _mine(self) -> Sessions:
        principal = current_principal()
        return self._sessions_for(principal.tenant, principal.subject)

    async def start_session(
        self,
        project: Annotated[str, Field(min_length=1, max_length=200)],
        repo: Annotated[str, Field(max_length=500)] | None = None,
        goal: Summary | None = None,
    ) -> StartedSession:
        """Start a coding session on a project (and repository), with its goal. The answer holds
        the hand-off note the last ended session of this project left, to pick up from."""
        return await self._mine().start(project, repo=repo, goal=goal)

    async def checkpoint(
        self, session_id: SessionId, summary: Summary, state: dict[str, Any] | None = None
    ) -> CheckpointView:
        """Record progress in an active session: a summary, and any JSON `state` to resume from
        (at most 64 KiB)."""
        return await self._mine().checkpoint(session_id, summary, state)

    async def end_session(self, session_id: SessionId, summary: Summary | None = None) -> SessionView:
        """End a session; `summary` is the hand-off note the next session of its project gets."""
        return await self._mine().end(session_id, summary)

    async def get_session(self, session_id: SessionId) -> SessionDetail:
        """A session with its latest checkpoints (newest first)."""
        return await self._mine().get(session_id)

    async def list_sessions(
        self,
        project: str | None = None,
        status: Literal["active", "ended"] | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")] = 20,
        cursor: str | None = None,
    ) -> SessionPage:
        """Sessions, newest first, of one project and status if given. Pass `next_cursor` back
        as `cursor` for the next page."""
        active = None if status is None else status == "active"
        return await self._mine().listing(project=project, active=active, limit=limit, cursor=cursor)
