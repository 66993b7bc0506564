"""Tables of the workflow store. Times are UTC; ids are UUIDv7 strings (sortable by creation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mahavishnu.platform.sqltypes import UTCDateTime

__all__ = [
    "AgentSessionEntry",
    "Attempt",
    "BackupEvent",
    "Base",
    "CircuitState",
    "DeadLetter",
    "Instance",
    "OutcomeOutboxEntry",
    "RepoRun",
    "Workflow",
]


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Workflow(Base):
    """One request to run a named workflow over a set of repositories."""

    __tablename__ = "workflows"
    __table_args__ = (Index("uq_workflows_idempotency", "requested_by", "idempotency_key", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    params: Mapped[dict[str, Any]]
    selector: Mapped[dict[str, Any]]
    requested_by: Mapped[str] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    trace_parent: Mapped[str | None] = mapped_column(String(64))
    """W3C traceparent of the triggering call: the workflow's and its runs' spans join its trace."""
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    """The caller's key for this trigger: unique per `requested_by` (`idempotency.py`)."""
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    """Digest of the trigger's arguments, set with a key: a retry must match it."""


class RepoRun(Base):
    """One workflow's work in one repository, across all its attempts."""

    __tablename__ = "repo_runs"
    __table_args__ = (Index("ix_repo_runs_dispatch", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    workflow_name: Mapped[str] = mapped_column(String(100))
    repo: Mapped[str] = mapped_column(String(100), index=True)
    repo_path: Mapped[str] = mapped_column(Text)
    repo_tags: Mapped[list[Any]]
    argv: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    exit_code: Mapped[int | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    output_tail: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    lease_expires_at: Mapped[datetime | None]
    trace_parent: Mapped[str | None] = mapped_column(String(64))
    """Copied from the workflow, so a claim has it without a join."""


class Attempt(Base):
    """Every execution of a repo run, kept so retries and healing are visible afterwards."""

    __tablename__ = "run_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("repo_runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    duration_seconds: Mapped[float] = mapped_column(Float)


class DeadLetter(Base):
    """A repo run that used up its retries, with what is needed to run it again."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("repo_runs.id", ondelete="CASCADE"), index=True)
    workflow_id: Mapped[str] = mapped_column(String(36), index=True)
    workflow_name: Mapped[str] = mapped_column(String(100))
    repo: Mapped[str] = mapped_column(String(100))
    inputs: Mapped[dict[str, Any]]
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int]
    retries: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """open (waiting), retrying (a retry is queued or running), resolved (a retry succeeded)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CircuitState(Base):
    """Per-repository circuit breaker, shared by every workflow and every replica."""

    __tablename__ = "circuit_breakers"

    repo: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None]
    probe_run_id: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[datetime]


class Instance(Base):
    """A running engine process; its heartbeat tells the others whether its runs are orphaned."""

    __tablename__ = "engine_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class BackupEvent(Base):
    """What happened to backups (create, verify, restore), so metrics and readiness can tell
    how old the last good backup is, whichever process made it."""

    __tablename__ = "backup_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    archive: Mapped[str] = mapped_column(String(255))
    ok: Mapped[bool]
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)


class OutcomeOutboxEntry(Base):
    """A closed workflow whose per-repository outcomes Akosha has not yet accepted: written in
    the transaction that closes the workflow, deleted once Akosha took them (`outcome_outbox.py`).
    It holds the workflow's id only: the outcomes are read from its runs when sent."""

    __tablename__ = "akosha_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    closed_at: Mapped[datetime]


class AgentSessionEntry(Base):
    """A finished run of the `agent` workflow whose Session-Buddy session is not yet written:
    written in the transaction that records the run's end, deleted once the session, its two
    memories and its end are in Session-Buddy (`agent_session_outbox.py`). It keeps what that
    attempt left (a retry from the dead-letter queue overwrites the run's row); the prompt and
    the repository are read from the run and its workflow, which never change."""

    __tablename__ = "agent_session_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("repo_runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    output_tail: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime]
    session_id: Mapped[str | None] = mapped_column(String(64))
    """Session-Buddy's session once started: a retried delivery continues it, never starts another."""
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    """The pusher delivering it, until then: replicas sharing the database never write one twice."""
