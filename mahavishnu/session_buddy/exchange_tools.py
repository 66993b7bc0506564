"""Session-Buddy's export and import tools for MCP clients, over `Exchange`, built per call for
the caller's tenant (from the token, never from an argument).

The tool imports only files this deployment signed: trusting another deployment's signature
is for the CLI (`Exchange.import_file`), run by whoever holds the database and its keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from pydantic import Field

from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.platform.paging import MAX_PAGE
from mahavishnu.session_buddy.exchange import MAX_IMPORT_BYTES, Exchange, ExportPage, ImportReport

__all__ = ["ExchangeTools"]


class ExchangeTools:
    def __init__(self, exchange_for: Callable[[str, str], Exchange]) -> None:
        self._exchange_for = exchange_for
        """(tenant, author) → that tenant's exchange; raises UnavailableError until the vault opened."""

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.export_memories, title="Export memories"),
            ToolSpec(self.import_memories, min_role="operator", read_only=False, title="Import memories"),
        ]

    def _mine(self) -> Exchange:
        principal = current_principal()
        return self._exchange_for(principal.tenant, principal.subject)

    async def export_memories(
        self,
        cursor: str | None = None,
        limit: Annotated[
            int, Field(ge=1, le=MAX_PAGE, description=f"Memories per page, 1 to {MAX_PAGE}.")
        ] = 50,
    ) -> ExportPage:
        """Export the caller's memories as JSONL, a page at a time: each memory with its whole
        history, tags, project, expiry and embedding, and a checksum. Join every page's `lines`
        with newlines, in order, passing `next_cursor` back as `cursor` until it is null; the
        last page ends with the signed trailer that import_memories checks."""
        return await self._mine().export(cursor, limit)

    async def import_memories(
        self,
        jsonl: Annotated[
            str, Field(min_length=1, max_length=MAX_IMPORT_BYTES, description="An export, its lines joined.")
        ],
    ) -> ImportReport:
        """Import an export_memories file into the caller's tenant. The whole file is checked
        first (every checksum, the count, the order and the signature of this deployment):
        an edited, cut or foreign file is refused, naming the line, and nothing is written.
        Memories keep their ids where free; ones already here (same id and version, or same
        content) are skipped, so importing a file twice changes nothing."""
        return await self._mine().import_lines(jsonl.split("\n"))
