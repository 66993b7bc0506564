"""Session-Buddy's memory tools for MCP clients: thin wrappers over `Memories`, built per call
for the caller's tenant (from the token, never from an argument)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated

from pydantic import Field

from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.platform.paging import MAX_PAGE
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory, SearchMode
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.views import (
    Kind,
    MemoryHistory,
    MemoryPage,
    MemoryStats,
    MemoryView,
    SearchPage,
    StoreResult,
)

__all__ = ["MemoryTools"]

Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")]
MemoryId = Annotated[str, Field(min_length=1, max_length=64, description="The memory's id.")]
Tags = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=256)]
Content = Annotated[str, Field(min_length=1, max_length=1_000_000)]


class MemoryTools:
    def __init__(self, memories_for: Callable[[str, str], Memories], metrics: MemoryMetrics) -> None:
        self._memories_for = memories_for
        """(tenant, author) → that tenant's store; raises UnavailableError until the vault opened."""
        self._metrics = metrics

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.store_memory, min_role="operator", read_only=False, title="Store a memory"),
            ToolSpec(self.get_memory, title="Read a memory"),
            ToolSpec(self.update_memory, min_role="operator", read_only=False, title="Update a memory"),
            ToolSpec(self.delete_memory, min_role="operator", read_only=False, title="Delete a memory"),
            ToolSpec(self.get_memory_history, title="A memory's versions"),
            ToolSpec(self.list_memories, title="List memories"),
            ToolSpec(self.search_memories, title="Search memories"),
            ToolSpec(self.memory_stats, title="Memory statistics"),
        ]

    def _mine(self) -> Memories:
        principal = current_principal()
        return self._memories_for(principal.tenant, principal.subject)

    async def store_memory(
        self,
        content: Content,
        kind: Kind = "note",
        tags: Tags | None = None,
        project: str | None = None,
        session_id: str | None = None,
        importance: Annotated[float, Field(ge=0, le=1)] = 0.5,
        expires_at: datetime | None = None,
        idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None,
    ) -> StoreResult:
        """Keep something worth remembering across sessions: a decision, fact, fix, preference or
        note, with optional tags, project, session and importance (0 to 1), and `expires_at`
        to forget it then. Pass an `idempotency_key` when you may retry: a retry answers the
        first result. Storing content that is already stored answers that memory (`created`
        false) and changes nothing."""
        new = NewMemory(
            content=content,
            kind=kind,
            tags=tags or (),
            project=project,
            session_id=session_id,
            importance=importance,
            expires_at=expires_at,
        )
        result = await self._mine().store(new, idempotency_key=idempotency_key)
        self._metrics.stored.labels("created" if result.created else "existing").inc()
        return result

    async def get_memory(self, memory_id: MemoryId) -> MemoryView:
        """Read one memory, current version."""
        return await self._mine().get(memory_id)

    async def update_memory(
        self,
        memory_id: MemoryId,
        content: Content | None = None,
        kind: Kind | None = None,
        tags: Tags | None = None,
        project: str | None = None,
        importance: Annotated[float, Field(ge=0, le=1)] | None = None,
        expires_at: datetime | None = None,
    ) -> MemoryView:
        """Supersede a memory with a new version (only the fields given change); the earlier
        versions stay readable with get_memory_history."""
        given = {
            "content": content,
            "kind": kind,
            "tags": tags,
            "project": project,
            "importance": importance,
            "expires_at": expires_at,
        }
        return await self._mine().update(memory_id, {k: v for k, v in given.items() if v is not None})

    async def delete_memory(self, memory_id: MemoryId) -> MemoryView:
        """Delete a memory: gone from every read and search at once, purged for good after the
        retention window. Answers what was deleted."""
        return await self._mine().delete(memory_id)

    async def get_memory_history(self, memory_id: MemoryId) -> MemoryHistory:
        """Every version of a memory, oldest first, with who wrote it."""
        return await self._mine().history(memory_id)

    async def list_memories(
        self,
        kinds: list[Kind] | None = None,
        tags: Tags | None = None,
        project: str | None = None,
        session_id: str | None = None,
        limit: Limit = 20,
        cursor: str | None = None,
    ) -> MemoryPage:
        """List memories, newest first, narrowed by kinds, tags (all must match), project and
        session. Pass `next_cursor` back as `cursor` for the next page."""
        filters = Filters(kinds=kinds or (), tags=tags or (), project=project, session_id=session_id)
        return await self._mine().listing(filters, limit=limit, cursor=cursor)

    async def search_memories(
        self,
        query: Annotated[str, Field(min_length=1, max_length=1000)],
        mode: SearchMode = "hybrid",
        kinds: list[Kind] | None = None,
        tags: Tags | None = None,
        project: str | None = None,
        session_id: str | None = None,
        limit: Limit = 10,
        cursor: str | None = None,
        max_tokens: Annotated[int, Field(ge=100, le=1_000_000)] | None = None,
    ) -> SearchPage:
        """Find memories, best first. `hybrid` (the default) finds both by meaning (a question in
        your own words) and by exact words and identifiers (error codes, test names, file paths);
        `keyword` only by words (BM25; case and width do not matter); `semantic` only by meaning
        (cosine of sentence embeddings). A memory stored a moment ago may be found by meaning only
        once it is embedded (about a second). Narrow with the same filters as list_memories; in
        semantic and hybrid modes `total` counts the ranked candidates, not every memory.
        `max_tokens` keeps the answer within about that many tokens (4 characters each): hits
        that do not fit come on the next page (`next_cursor`), and a first hit too long alone is
        cut (`truncated`; get_memory reads it whole)."""
        filters = Filters(kinds=kinds or (), tags=tags or (), project=project, session_id=session_id)
        with self._metrics.search_duration.labels(mode).time():
            page = await self._mine().search(
                query, filters, mode=mode, limit=limit, cursor=cursor, max_tokens=max_tokens
            )
        self._metrics.searches.labels(mode).inc()
        return page

    async def memory_stats(self) -> MemoryStats:
        """How many memories the caller's tenant keeps, by kind, and how many deleted ones await
        their purge."""
        return await self._mine().stats()
