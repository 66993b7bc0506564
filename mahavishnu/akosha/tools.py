"""Akosha's MCP tools: thin wrappers over the inbox and the reader; the platform checks roles,
counts, logs and maps errors. Every read is narrowed to the caller's source scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.reads import Reader
from mahavishnu.akosha.views import IngestResult, RecordPage, RecordView, SourcePage
from mahavishnu.akosha.wire import IngestRecord, MemoryId, SourceName, Tenant
from mahavishnu.platform import ToolSpec, current_principal
from mahavishnu.platform.paging import MAX_PAGE

__all__ = ["AkoshaTools"]

Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")]


class AkoshaTools:
    def __init__(self, inbox: Inbox, reader: Reader) -> None:
        self._inbox = inbox
        self._reader = reader

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.ingest_memories, min_role="admin", read_only=False, title="Ingest memories"),
            ToolSpec(self.list_sources, title="List source systems"),
            ToolSpec(self.get_record, title="Read a record"),
            ToolSpec(self.list_records, title="List records"),
        ]

    async def ingest_memories(self, source: SourceName, records: list[IngestRecord]) -> IngestResult:
        """Take in a batch of one source's memory records, as `POST /ingest/memories` does:
        upserts (with the memory's document) and tombstones, each naming its source, tenant,
        memory_id and version. Idempotent on (source, memory_id, version): a replayed batch, or
        a version older than the one held, changes nothing; a tombstone deletes."""
        return await self._inbox.take(source, records)

    async def list_sources(self, limit: Limit = 50, cursor: str | None = None) -> SourcePage:
        """The source systems (Session-Buddy instances) whose records you may read, by name,
        with how many memories each holds and how many it deleted."""
        return await self._reader.sources(current_principal(), limit=limit, cursor=cursor)

    async def get_record(self, source: SourceName, memory_id: MemoryId) -> RecordView:
        """One memory as its source last sent it: its newest version, and its document unless
        the source deleted it."""
        return await self._reader.record(current_principal(), source, memory_id)

    async def list_records(
        self,
        source: SourceName | None = None,
        tenant: Tenant | None = None,
        include_tombstoned: bool = False,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> RecordPage:
        """Records by source, then memory id, narrowed to a source and a tenant when given;
        deleted ones only with `include_tombstoned`. Pass `next_cursor` back as `cursor` for
        the next page."""
        return await self._reader.records(
            current_principal(),
            source=source,
            tenant=tenant,
            include_tombstoned=include_tombstoned,
            limit=limit,
            cursor=cursor,
        )
