"""What a memory is in storage, shared by the stores that write, search, export and import it:
the checked document a version seals, the sealed version with its blind index rows, and what
"live" means (this tenant's, not deleted, not expired, meeting the filters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.search.postings import IndexedMemory
from mahavishnu.platform.search.terms import terms
from mahavishnu.session_buddy import outbox
from mahavishnu.session_buddy.checks import label, text
from mahavishnu.session_buddy.models import Memory, MemoryLabel, MemoryTerm, MemoryVersion
from mahavishnu.session_buddy.vault import MEMORY_RECORD, Vault
from mahavishnu.session_buddy.views import KINDS, MemoryView

__all__ = [
    "Filters",
    "Limits",
    "NewMemory",
    "checked_document",
    "drop_index",
    "fingerprint",
    "live",
    "memory_view",
    "open_memory",
    "write_version",
]

_Columns = TypeVarTuple("_Columns")


@dataclass(frozen=True, slots=True)
class Limits:
    max_content_chars: int
    max_tags: int
    max_tag_chars: int = 64


@dataclass(frozen=True, slots=True)
class NewMemory:
    content: str
    kind: str = "note"
    tags: Sequence[str] = ()
    project: str | None = None
    session_id: str | None = None
    importance: float = 0.5
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """Narrow a listing or a search: every given condition must hold."""

    kinds: Sequence[str] = ()
    tags: Sequence[str] = field(default=())
    project: str | None = None
    session_id: str | None = None


def checked_document(new: NewMemory, limits: Limits) -> dict[str, Any]:
    """The checked, normalised document a version seals; InvalidArgumentError names the field."""
    content = text("content", new.content, limits.max_content_chars)
    if new.kind not in KINDS:
        raise InvalidArgumentError(f"kind: one of {', '.join(KINDS)}")
    if not 0.0 <= new.importance <= 1.0:
        raise InvalidArgumentError("importance: between 0 and 1")
    tags = sorted({label("tags", t, limits.max_tag_chars) for t in new.tags})
    if len(tags) > limits.max_tags:
        raise InvalidArgumentError(f"tags: at most {limits.max_tags}")
    project = None if new.project is None else label("project", new.project, 200)
    session_id = None if new.session_id is None else label("session_id", new.session_id, 64)
    if new.expires_at is not None and new.expires_at.tzinfo is None:
        raise InvalidArgumentError("expires_at: give a time zone (e.g. 2027-01-01T00:00:00Z)")
    return {
        "content": content,
        "kind": new.kind,
        "tags": tags,
        "project": project,
        "session_id": session_id,
        "importance": float(new.importance),
    }


def write_version(
    session: AsyncSession,
    vault: Vault,
    memory: Memory,
    document: dict[str, Any],
    *,
    created_at: datetime,
    author: str,
) -> IndexedMemory:
    """Seal `document` as the memory's current version, index it and queue it for Akosha (all
    in `session`, so the version and its outbox entry commit or fail together). Answers what the
    in-process keyword index takes once the transaction commits."""
    tenant = memory.tenant
    sealed = vault.seal(MEMORY_RECORD, tenant, memory.id, memory.version, document)
    words = terms(document["content"])
    memory.sealed = sealed
    memory.term_count = sum(words.values())
    memory.changed_at = datetime.now(UTC)
    session.add(
        MemoryVersion(
            memory_id=memory.id,
            version=memory.version,
            tenant=tenant,
            sealed=sealed,
            created_at=created_at,
            author=author,
        )
    )
    tokens = {vault.token(tenant, "word", word): count for word, count in words.items()}
    session.add_all(
        MemoryTerm(memory_id=memory.id, token=token, tenant=tenant, occurrences=count)
        for token, count in tokens.items()
    )
    labels = {vault.token(tenant, "tag", t) for t in document["tags"]}
    for domain in ("project", "session_id"):
        if document[domain] is not None:
            labels.add(vault.token(tenant, domain, document[domain]))
    session.add_all(MemoryLabel(memory_id=memory.id, token=t, tenant=tenant) for t in labels)
    # queued now, not at `created_at`: an import writes versions made long ago
    outbox.record(
        session, "upsert", tenant=tenant, memory_id=memory.id, version=memory.version, at=datetime.now(UTC)
    )
    expires_at = memory.expires_at
    return IndexedMemory(
        memory_id=memory.id,
        version=memory.version,
        length=memory.term_count,
        expires_at=None if expires_at is None else expires_at.timestamp(),
        words=tokens,
    )


async def drop_index(session: AsyncSession, memory_id: str) -> None:
    """Remove the memory's keyword and label entries (a new version re-adds its own)."""
    await session.execute(delete(MemoryTerm).where(MemoryTerm.memory_id == memory_id))
    await session.execute(delete(MemoryLabel).where(MemoryLabel.memory_id == memory_id))


def live(
    query: Select[*_Columns], vault: Vault, limits: Limits, tenant: str, filters: Filters
) -> Select[*_Columns]:
    """`query` narrowed to the tenant's live memories (not deleted, not expired) meeting `filters`."""
    now = datetime.now(UTC)
    conditions: list[ColumnElement[bool]] = [
        Memory.tenant == tenant,
        Memory.deleted_at.is_(None),
        or_(Memory.expires_at.is_(None), Memory.expires_at > now),
    ]
    if filters.kinds:
        unknown = sorted(set(filters.kinds) - set(KINDS))
        if unknown:
            raise InvalidArgumentError(f"kinds: {unknown[0]!r} is not one of {', '.join(KINDS)}")
        conditions.append(Memory.kind.in_(list(filters.kinds)))
    labels = [("tag", label("tags", t, limits.max_tag_chars)) for t in filters.tags]
    if filters.project is not None:
        labels.append(("project", label("project", filters.project, 200)))
    if filters.session_id is not None:
        labels.append(("session_id", label("session_id", filters.session_id, 64)))
    for domain, value in labels:
        token = vault.token(tenant, domain, value)
        conditions.append(
            Memory.id.in_(
                select(MemoryLabel.memory_id).where(MemoryLabel.tenant == tenant, MemoryLabel.token == token)
            )
        )
    return query.where(and_(*conditions))


def fingerprint(filters: Filters) -> list[object]:
    """The filters as a cursor binds them: a page cursor is only good for the same filters."""
    return [sorted(filters.kinds), sorted(filters.tags), filters.project, filters.session_id]


def open_memory(vault: Vault, memory: Memory) -> dict[str, Any]:
    return vault.open(MEMORY_RECORD, memory.tenant, memory.id, memory.version, memory.sealed)


def memory_view(memory: Memory, document: dict[str, Any]) -> MemoryView:
    return MemoryView(
        id=memory.id,
        version=memory.version,
        kind=document["kind"],
        content=document["content"],
        tags=document["tags"],
        project=document["project"],
        session_id=document["session_id"],
        importance=document["importance"],
        created_at=memory.created_at,
        updated_at=memory.updated_at,
        expires_at=memory.expires_at,
        deleted_at=memory.deleted_at,
    )
