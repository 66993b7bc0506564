"""Akosha's tables: one row per memory of each source, holding its newest version; one row per
repository run of each workflow Mahavishnu finished.

A row is a last-writer-wins register ordered by (version, tombstone over upsert): ingest only
ever moves it forward, so a batch replayed or arriving out of order leaves the same row. A
tombstone keeps the row (its version is what stops an older upsert from bringing the memory
back) but drops the document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import Float, Index, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mahavishnu.platform.sqltypes import UTCDateTime

__all__ = ["LIVE", "TOMBSTONED", "Base", "Record", "State", "StoredVector", "WorkflowOutcome"]

State = Literal["live", "tombstoned"]
LIVE: State = "live"
TOMBSTONED: State = "tombstoned"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Record(Base):
    """A memory as its source last told of it. `sealed` is the document (content and metadata,
    AES-256-GCM, bound to source, tenant, memory and version); None once tombstoned."""

    __tablename__ = "akosha_records"
    __table_args__ = (Index("ix_akosha_records_source_tenant", "source", "tenant"),)

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    memory_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]
    """When this version arrived (not when the source wrote it: that is in the document)."""


class StoredVector(Base):
    """A record's embedding as the search index last made it: sealed like the document (bound to
    source, memory, version and model), so a restart loads vectors instead of embedding every
    record again, and the warm and cold tiers rescore their candidates in float32 from here.
    `accessed_at` is when a reader last saw the record: the aging policy keeps it hot."""

    __tablename__ = "akosha_vectors"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    memory_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(100))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    accessed_at: Mapped[datetime | None]


class WorkflowOutcome(Base):
    """How one repository's run of one workflow ended, as its Mahavishnu (`source`) reported.

    Plain columns, not sealed like a memory: a workflow's name, a repository's name, a status and
    a duration are operational facts, which the analytics group and sum in SQL. The row moves
    only forward (a later `finished_at`: the workflow closed again after a dead-letter retry), so
    a replayed batch changes nothing."""

    __tablename__ = "akosha_outcomes"
    __table_args__ = (Index("ix_akosha_outcomes_finished", "finished_at"),)

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repo: Mapped[str] = mapped_column(String(100), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    """Time its attempts ran, summed (retries included, backoff waits not); None: never started."""
    finished_at: Mapped[datetime]
    received_at: Mapped[datetime]
