"""Session-Buddy's tables. Every row carries its tenant; nothing a caller wrote is stored in
the clear: text and metadata are sealed (`vault.py`), and what search and filters need is kept
as blind tokens (keyed HMACs), never as words."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mahavishnu.platform.sqltypes import UTCDateTime

__all__ = [
    "AuditEntry",
    "AuditHead",
    "Base",
    "Checkpoint",
    "CodingSession",
    "IndexKey",
    "Memory",
    "MemoryLabel",
    "MemoryTerm",
    "MemoryVector",
    "MemoryVersion",
    "OutboxEntry",
    "RetentionPolicy",
]

TOKEN_BYTES = 16
"""A blind token's length: 128 bits of HMAC-SHA256 leave no collisions in practice."""


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class IndexKey(Base):
    """The blind-index key, sealed under the key ring: rotating the ring re-seals this one row,
    so the tokens of every memory stay valid and the old key is no longer needed."""

    __tablename__ = "session_buddy_index_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Memory(Base):
    """A memory's current version. `sealed` holds its content and metadata (encrypted, bound to
    tenant, id and version); the other columns are what storage needs to narrow and order."""

    __tablename__ = "session_buddy_memories"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_mac", name="uq_session_buddy_memories_idempotency"),
        UniqueConstraint("tenant", "content_mac", name="uq_session_buddy_memories_content"),
        Index("ix_session_buddy_memories_tenant_id", "tenant", "id"),
        Index("ix_session_buddy_memories_changed_at", "changed_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    importance: Mapped[float] = mapped_column(Float)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    content_mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    """Keyed MAC of the content: the same text stored twice is one memory. None once deleted."""
    idempotency_mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    term_count: Mapped[int] = mapped_column(Integer)
    """Words in the content: the document length keyword ranking (BM25) normalises by."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]
    """When this row last changed what keyword search sees (a version written, a deletion), by
    this server's clock, whatever the memory's own times say (an import keeps those): what other
    processes' keyword indexes follow (`keywords.py`). Set by every write; None only in a row no
    write has touched since migration 0007, which filled it from `updated_at`."""


class MemoryVersion(Base):
    """Every version a memory had, sealed like the memory: `update_memory` supersedes, never
    overwrites, and the history stays readable until the memory is purged."""

    __tablename__ = "session_buddy_memory_versions"

    memory_id: Mapped[str] = mapped_column(
        ForeignKey("session_buddy_memories.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    author: Mapped[str] = mapped_column(String(200))


class MemoryTerm(Base):
    """One word of a memory's current content, as a blind token, with how often it occurs."""

    __tablename__ = "session_buddy_memory_terms"
    __table_args__ = (Index("ix_session_buddy_memory_terms_tenant_token", "tenant", "token"),)

    memory_id: Mapped[str] = mapped_column(
        ForeignKey("session_buddy_memories.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_BYTES), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    occurrences: Mapped[int] = mapped_column(Integer)


class MemoryVector(Base):
    """The embedding of a memory's content at one version, by one model, sealed like the
    memory (bound to tenant, id, version and model): search by meaning decrypts these into the
    in-process index, never the database. A vector whose version or model is not the current
    one is made again by the embedding workers."""

    __tablename__ = "session_buddy_memory_vectors"
    __table_args__ = (Index("ix_session_buddy_memory_vectors_embedded_at", "embedded_at"),)

    memory_id: Mapped[str] = mapped_column(
        ForeignKey("session_buddy_memories.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(200))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    embedded_at: Mapped[datetime]
    """When it was written: other processes follow new vectors into their index by it."""


class MemoryLabel(Base):
    """A tag, the project or the session of a memory, as a blind token: what filters match."""

    __tablename__ = "session_buddy_memory_labels"
    __table_args__ = (Index("ix_session_buddy_memory_labels_tenant_token", "tenant", "token"),)

    memory_id: Mapped[str] = mapped_column(
        ForeignKey("session_buddy_memories.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_BYTES), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))


class OutboxEntry(Base):
    """A memory version or a deletion not yet accepted by Akosha, written in the transaction
    that made it, so none is lost. Ids only, never content: the pusher opens the sealed version
    when it sends. The rows are the queue itself: an entry is deleted once Akosha accepted it,
    which is exact under any commit order (a last-pushed-id cursor is not: a transaction that
    took a smaller id may commit after a larger one was pushed)."""

    __tablename__ = "session_buddy_outbox"
    __table_args__ = (
        Index("ix_session_buddy_outbox_memory_id", "memory_id"),
        {"sqlite_autoincrement": True},  # ids never reused, even once the table was emptied
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    """The order entries are sent in (commit order may differ between memories, never within one)."""
    tenant: Mapped[str] = mapped_column(String(128))
    memory_id: Mapped[str] = mapped_column(String(36))
    """No foreign key: a deletion's entry outlives the purge of its memory."""
    version: Mapped[int] = mapped_column(Integer)
    """An upsert's version; a tombstone's is the one after the memory's last, so it supersedes
    every upsert and stays distinct from them on (source, memory, version)."""
    op: Mapped[str] = mapped_column(String(16))
    """'upsert' or 'tombstone'."""
    created_at: Mapped[datetime]


class CodingSession(Base):
    """One AI coding session: started, checkpointed, ended with a hand-off note. What it is
    about (project, repository, goal, hand-off) is sealed; the project also as a blind token,
    so the next session of a project finds the last hand-off without reading any plaintext."""

    __tablename__ = "session_buddy_sessions"
    __table_args__ = (
        Index("ix_session_buddy_sessions_tenant_project", "tenant", "project_token", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    project_token: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_BYTES))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    seal_version: Mapped[int] = mapped_column(Integer)
    """Bumped at every re-seal (the end adds the hand-off), so each sealed value is bound once."""
    author: Mapped[str] = mapped_column(String(200))
    checkpoints: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    last_checkpoint_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class Checkpoint(Base):
    """A session's progress note and state at one moment, sealed."""

    __tablename__ = "session_buddy_checkpoints"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("session_buddy_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class RetentionPolicy(Base):
    """A tenant's retention: memories not updated for `max_age_days` are purged for good."""

    __tablename__ = "session_buddy_retention_policies"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    max_age_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    """One thing someone did, chained: `digest` covers the entry and the digest before it, so
    an edited, removed or inserted row breaks every digest after it (`audit.verify`). Entries
    name who, what and which id, never the content."""

    __tablename__ = "session_buddy_audit"
    __table_args__ = (Index("ix_session_buddy_audit_tenant_seq", "tenant", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    tenant: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(500))
    """Small JSON of counts and flags (never text a caller wrote)."""
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """The chain's last sequence number and digest, in one row: every append updates it first,
    which serialises appends across processes (a row lock on PostgreSQL, the write lock on
    SQLite) so the chain never forks."""

    __tablename__ = "session_buddy_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
