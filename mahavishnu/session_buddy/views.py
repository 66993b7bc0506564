"""What callers see of memories: response schemas, separate from the sealed rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "KINDS",
    "CheckpointView",
    "HandOff",
    "Kind",
    "MemoryHistory",
    "MemoryPage",
    "MemoryStats",
    "MemoryVersionView",
    "MemoryView",
    "SearchHit",
    "SearchPage",
    "SessionDetail",
    "SessionPage",
    "SessionView",
    "StartedSession",
    "StoreResult",
]

Kind = Literal["decision", "fact", "fix", "preference", "note"]
KINDS: tuple[Kind, ...] = ("decision", "fact", "fix", "preference", "note")
NEXT = "Pass back as `cursor` (with the same arguments) for the next page; null on the last page."


class MemoryView(BaseModel):
    id: str
    version: int
    kind: Kind
    content: str
    tags: list[str]
    project: str | None
    session_id: str | None
    importance: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    deleted_at: datetime | None = Field(default=None, description="Set once the memory was deleted.")


class StoreResult(BaseModel):
    memory: MemoryView
    created: bool = Field(description="False when nothing new was stored (see `reason`).")
    reason: str | None = Field(
        default=None, description="Why nothing was stored: a retry with the same key, or the same content."
    )


class MemoryPage(BaseModel):
    memories: list[MemoryView]
    total: int = Field(description="Memories matching the filters, in all pages.")
    next_cursor: str | None = Field(description=NEXT)


class SearchHit(BaseModel):
    memory: MemoryView
    score: float = Field(description="Higher is better; comparable within one answer only.")
    truncated: bool = Field(
        default=False,
        description="The memory's content was cut to fit `max_tokens` (get_memory reads it whole).",
    )


class SearchPage(BaseModel):
    hits: list[SearchHit]
    total: int = Field(description="Memories matching the query and filters, in all pages.")
    next_cursor: str | None = Field(description=NEXT)


class MemoryVersionView(BaseModel):
    version: int
    content: str
    kind: Kind
    tags: list[str]
    author: str
    created_at: datetime


class MemoryHistory(BaseModel):
    id: str
    versions: list[MemoryVersionView] = Field(description="Oldest first; the last is the current one.")


class MemoryStats(BaseModel):
    total: int = Field(description="Live memories (not deleted, not expired).")
    by_kind: dict[str, int]
    deleted_awaiting_purge: int


class SessionView(BaseModel):
    id: str
    project: str
    repo: str | None
    goal: str | None
    status: Literal["active", "ended"]
    started_at: datetime
    ended_at: datetime | None
    checkpoints: int
    last_checkpoint_at: datetime | None
    handoff: str | None = Field(description="The note left for the next session when this one ended.")


class CheckpointView(BaseModel):
    number: int
    summary: str
    state: dict[str, Any] | None
    created_at: datetime


class HandOff(BaseModel):
    session_id: str
    summary: str
    ended_at: datetime


class StartedSession(BaseModel):
    session: SessionView
    previous_handoff: HandOff | None = Field(
        description="The hand-off note of the last ended session of this project, to pick up from."
    )


class SessionDetail(BaseModel):
    session: SessionView
    recent_checkpoints: list[CheckpointView] = Field(description="The latest ones, newest first.")


class SessionPage(BaseModel):
    sessions: list[SessionView]
    total: int = Field(description="Sessions matching the filters, in all pages.")
    next_cursor: str | None = Field(description=NEXT)
