"""`search_all_systems`, the MCP tool over `cross_search.py`; the platform checks the role
(reader and up), counts, logs and maps errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AwareDatetime, Field

from mahavishnu.akosha.cross_search import CrossSearch, CrossSearchPage, SearchMode
from mahavishnu.akosha.wire import SourceName
from mahavishnu.platform import ToolSpec, current_principal
from mahavishnu.platform.paging import MAX_PAGE

__all__ = ["SearchTools"]

Query = Annotated[str, Field(min_length=1, max_length=1000, description="Words, identifiers or a question.")]
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Hits per page, 1 to {MAX_PAGE}.")]
Project = Annotated[str, Field(min_length=1, max_length=200)]


class SearchTools:
    def __init__(self, search: CrossSearch) -> None:
        self._search = search

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(self.search_all_systems, title="Search every system's memories")]

    async def search_all_systems(
        self,
        query: Query,
        sources: Annotated[list[SourceName], Field(max_length=100)] | None = None,
        projects: Annotated[list[Project], Field(max_length=100)] | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        mode: SearchMode = "hybrid",
        limit: Limit = 10,
        cursor: str | None = None,
    ) -> CrossSearchPage:
        """Find memories across every source system you may read, best first: `hybrid` (words
        and meaning fused; the default), `keyword` (BM25 over the words, identifiers and paths)
        or `semantic` (by meaning). Narrow by `sources`, `projects` and the time the memory was
        written (`since` inclusive, `until` exclusive). Each hit names its source, tenant,
        session and time. Pass `next_cursor` back as `cursor` for the next page."""
        return await self._search.search(
            current_principal(),
            query,
            sources=sources or (),
            projects=projects or (),
            since=since,
            until=until,
            mode=mode,
            limit=limit,
            cursor=cursor,
        )
