"""What a source sends to `/ingest/memories` (and to the `ingest_memories` tool): the batch as
Session-Buddy's pusher writes it (`session_buddy/outbox.py`), checked field by field.

    {"source": S, "records": [{source, tenant, memory_id, version, op, ...}, ...]}

And what a Mahavishnu sends to `/ingest/outcomes` once its workflows close:

    {"source": S, "outcomes": [{workflow_id, workflow, repo, status, attempts, ...}, ...]}

An upsert carries the memory's document, and may carry the embedding its sender already made
(`{"model": M, "vector": base64 of little-endian float32}`): when M is the model Akosha runs,
the vector is stored and indexed as sent, so a memory is not embedded twice; any other model's
vector is set aside and Akosha embeds the text itself. A tombstone carries its identity only. Unknown fields
are refused, not dropped: a sender that grew a field Akosha does not know is told so, loudly,
instead of having it silently lost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from mahavishnu.platform import InvalidArgumentError

__all__ = [
    "Batch",
    "Embedding",
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


MAX_DIMENSIONS = 4096


class Embedding(BaseModel):
    """A vector its sender made of the memory's content, and the model that made it."""

    model_config = _STRICT

    model: Annotated[str, Field(min_length=1, max_length=100)]
    vector: Annotated[
        str,
        Field(
            max_length=(MAX_DIMENSIONS * 4 + 2) // 3 * 4,
            description="Base64 of the vector as little-endian float32, up to 4096 of them.",
        ),
    ]

    @field_validator("vector")
    @classmethod
    def _a_vector(cls, text: str) -> str:
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        if not data or len(data) % 4:
            raise ValueError("must be whole float32 values (a multiple of 4 bytes)")
        values = np.frombuffer(data, dtype="<f4")
        if not np.all(np.isfinite(values)) or not np.any(values):
            raise ValueError("must be finite and not all zero")
        return text

    @cached_property
    def normalised(self) -> NDArray[np.float32]:
        """The vector, L2-normalised (the index compares directions): decoded once, though
        ingest and the index both ask for it."""
        values = np.frombuffer(base64.b64decode(self.vector), dtype="<f4").astype(np.float64)
        normalised: NDArray[np.float32] = (values / np.linalg.norm(values)).astype(np.float32)
        return normalised

    @classmethod
    def of(cls, model: str, vector: NDArray[np.float32]) -> Embedding:
        """What a sender puts on the wire for `vector`."""
        return cls(model=model, vector=base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode())


class Identity(BaseModel):
    """Which memory, which version: Akosha is idempotent on (source, memory_id, version)."""

    model_config = _STRICT

    source: SourceName
    tenant: Tenant
    memory_id: MemoryId
    version: Version


class Upsert(Identity, MemoryDocument):
    op: Literal["upsert"]
    embedding: Embedding | None = None

    def document(self) -> MemoryDocument:
        """The document part alone (already checked: built without checking again)."""
        fields = {name: getattr(self, name) for name in MemoryDocument.model_fields}
        return MemoryDocument.model_construct(**fields)


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
