"""What a source sends to `/ingest/memories` (and to the `ingest_memories` tool): the batch as
Session-Buddy's pusher writes it (`session_buddy/outbox.py`), checked field by field.

    {"source": S, "records": [{source, tenant, memory_id, version, op, ...}, ...]}

And what a Mahavishnu sends to `/ingest/outcomes` once its workflows close:

    {"source": S, "outcomes": [{workflow_id, workflow, repo, status, attempts, ...}, ...]}

An upsert carries the memory's document; a tombstone carries its identity only. Unknown fields
are refused, not dropped: a sender that grew a field Akosha does not know is told so, loudly,
instead of having it silently lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mahavishnu.platform import InvalidArgumentError

__all__ = [
    "Batch",
    "Identity",
    "IngestRecord",
    "MemoryDocument",
    "MemoryId",
    "OutcomeBatch",
    "SourceName",
    "Tenant",
    "Tombstone",
    "Upsert",
    "WorkflowRun",
    "check_batch",
    "check_size",
]

SourceName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="The sending system's name: letters, digits, '.', '_', '-'; up to 100.",
    ),
]
Tenant = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:-]{1,128}$", description="The tenant at the source.")]
MemoryId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="The memory's id at the source.")
]
Version = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]
Label = Annotated[str, Field(min_length=1, max_length=200)]

_STRICT = ConfigDict(extra="forbid")


class MemoryDocument(BaseModel):
    """A memory's content and metadata: what Akosha seals and hands back."""

    model_config = _STRICT

    content: Annotated[str, Field(min_length=1, max_length=1_000_000)]
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    tags: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=256)]
    project: Label | None
    session_id: Annotated[str, Field(min_length=1, max_length=64)] | None
    importance: Annotated[float, Field(ge=0, le=1)]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Identity(BaseModel):
    """Which memory, which version: Akosha is idempotent on (source, memory_id, version)."""

    model_config = _STRICT

    source: SourceName
    tenant: Tenant
    memory_id: MemoryId
    version: Version


class Upsert(Identity, MemoryDocument):
    op: Literal["upsert"]

    def document(self) -> MemoryDocument:
        return MemoryDocument.model_validate(self.model_dump(include=set(MemoryDocument.model_fields)))


class Tombstone(Identity):
    op: Literal["tombstone"]


IngestRecord = Annotated[Upsert | Tombstone, Field(discriminator="op")]


class Batch(BaseModel):
    model_config = _STRICT

    source: SourceName
    records: list[IngestRecord]


RepoName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
"""A repository's name, as Mahavishnu's manifest spells them."""


class WorkflowRun(BaseModel):
    """How one repository's run of one workflow ended. Akosha keeps one per (source,
    workflow_id, repo), moving it forward only to a later `finished_at`."""

    model_config = _STRICT

    workflow_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    workflow: Annotated[str, Field(min_length=1, max_length=100)]
    repo: RepoName
    status: Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,31}$")]
    """succeeded, failed, timed_out, cancelled, skipped_circuit_open (Mahavishnu's run statuses)."""
    attempts: Annotated[int, Field(strict=True, ge=0, le=10_000)]
    duration_seconds: Annotated[float, Field(ge=0, le=366 * 86400)] | None
    finished_at: AwareDatetime


class OutcomeBatch(BaseModel):
    model_config = _STRICT

    source: SourceName
    outcomes: list[WorkflowRun]


def check_size(field: str, items: Sequence[object], max_items: int) -> None:
    """A batch is neither empty nor bigger than `max_items`."""
    if not items:
        raise InvalidArgumentError(f"{field}: must have at least 1 item")
    if len(items) > max_items:
        raise InvalidArgumentError(f"{field}: at most {max_items} in one batch")


def check_batch(source: str, records: Sequence[Identity], max_records: int) -> None:
    """What the field checks cannot say: a batch is one source's, and neither empty nor too big."""
    check_size("records", records, max_records)
    for index, record in enumerate(records):
        if record.source != source:
            raise InvalidArgumentError(f"records[{index}].source: must be the batch's source ({source!r})")
