"""What callers see of Akosha's store: answer schemas, separate from the sealed rows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from mahavishnu.akosha.models import State
from mahavishnu.akosha.wire import MemoryDocument

__all__ = ["IngestResult", "RecordPage", "RecordView", "SourcePage", "SourceView"]

NEXT = "Pass back as `cursor` (with the same arguments) for the next page; null on the last page."


class IngestResult(BaseModel):
    accepted: int = Field(description="Records that moved the store forward.")
    unchanged: int = Field(
        description="Records already there, or older than what is there (replays, old versions)."
    )


class RecordView(BaseModel):
    source: str
    tenant: str
    memory_id: str
    version: int = Field(description="The newest version received (a tombstone's, once deleted).")
    state: State
    document: MemoryDocument | None = Field(description="The memory; null once tombstoned.")
    received_at: datetime = Field(description="When this version arrived.")


class RecordPage(BaseModel):
    records: list[RecordView]
    total: int = Field(description="Records matching the filters, in all pages.")
    next_cursor: str | None = Field(description=NEXT)


class SourceView(BaseModel):
    source: str
    live: int = Field(description="Memories held.")
    tombstoned: int = Field(description="Memories the source deleted.")
    last_received_at: datetime


class SourcePage(BaseModel):
    sources: list[SourceView]
    total: int = Field(description="Sources in scope, in all pages.")
    next_cursor: str | None = Field(description=NEXT)
