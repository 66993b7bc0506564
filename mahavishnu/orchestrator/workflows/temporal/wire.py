"""The values Temporal carries between the workflow and its activities: plain dataclasses of
str, int, float and lists (the SDK's JSON converter rebuilds them from their type hints), kept
free of imports the workflow sandbox would refuse.

Runs travel packed: a batch's runs and a result's outcomes are one JSON string each, written
and read by the activities. The SDK rebuilds dataclasses field by field in Python, which for a
thousand runs cost the replica more CPU than recording them; the workflow only routes batches
and never needs to look inside one (except to fail a batch no worker took).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from mahavishnu.orchestrator.workflows.records import Claimed

NOT_STARTED = "cancelled before it started"

__all__ = [
    "NOT_STARTED",
    "Batch",
    "BatchResult",
    "Began",
    "ClaimRequest",
    "Plan",
    "Results",
    "RunDone",
    "Settle",
    "WorkflowInput",
    "not_run",
    "pack_done",
    "pack_runs",
    "result_of",
    "unpack_done",
    "unpack_runs",
]


@dataclass
class WorkflowInput:
    """One dataclass input: a workflow argument with a default loses its type hints otherwise."""

    workflow_id: str
    control_queue: str
    task_queue_prefix: str
    heartbeat_seconds: float
    host_timeout_seconds: float
    history_limit: int = 8000
    """Past this many history events the workflow drains and continues as new."""


@dataclass
class ClaimRequest:
    workflow_id: str
    in_flight: int
    """Batches of the workflow executing now."""


@dataclass
class Batch:
    host: str | None
    runs: str
    """JSON: the runs to execute, in order (`pack_runs`, `unpack_runs`)."""


@dataclass
class Began:
    """A run a batch started (signalled by its worker, so the run shows running at once)."""

    run_id: str
    attempt: int
    at: float
    """POSIX seconds."""


@dataclass
class Plan:
    """What a claim found: batches to execute now; else whether the workflow closed, or how long
    until a retry's backoff ends."""

    batches: list[Batch]
    closed: bool
    status: str
    wait_seconds: float | None
    """Until the next queued run is due; None: nothing is queued (wait for batches or a wake)."""
    full: bool = False
    """The workflow's batches in flight are at its cap: claim again once one finishes."""
    exhausted: bool = False
    """Fewer runs were due than there was room for: claiming again finds nothing until a
    retry is requeued, a backoff ends or new runs come."""


@dataclass
class Recorded:
    """What recording a batch changed that the workflow must know."""

    requeued: bool
    """A run goes round again (a retry after backoff): claim again."""
    closed: str | None
    """The workflow's final status, if this record closed it."""


@dataclass
class RunDone:
    """One attempt finished (`records.Outcome` on the wire); times are POSIX seconds."""

    run: Claimed
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration_seconds: float
    output_tail: str
    output_bytes: int
    error: str | None
    log_written: bool
    started_at: float
    log_path: str
    started: bool = True


@dataclass
class BatchResult:
    done: str = "[]"
    """JSON: the finished attempts (`pack_done`, `unpack_done`)."""
    lost: str = "[]"
    """JSON: attempts a worker died in (a retried batch found them begun, not finished):
    recorded as lost, and run again as the next attempt (which `done` holds)."""


@dataclass
class Results:
    """Batch results recorded together (the workflow merges what finished meanwhile)."""

    items: list[BatchResult]


def pack_runs(runs: list[Claimed]) -> str:
    return json.dumps([dataclasses.astuple(run) for run in runs])


def unpack_runs(packed: str) -> list[Claimed]:
    return [Claimed(*fields) for fields in json.loads(packed)]


def pack_done(done: list[RunDone]) -> str:
    return json.dumps([[*dataclasses.astuple(d.run), *_outcome_fields(d)] for d in done])


def unpack_done(packed: str) -> list[RunDone]:
    width = len(dataclasses.fields(Claimed))
    return [RunDone(Claimed(*row[:width]), *row[width:]) for row in json.loads(packed)]


def not_run(run: Claimed, reason: str, at: float) -> RunDone:
    """A run no worker executed: cancelled before it started (no attempt), or failed with the
    reason (an attempt, retried per policy)."""
    cancelled = reason == NOT_STARTED
    return RunDone(run, None, False, cancelled, 0.0, "", 0, reason, False, at, "", started=not cancelled)


def result_of(done: list[RunDone], lost: list[Claimed] | None = None) -> BatchResult:
    return BatchResult(pack_done(done), pack_runs(lost or []))


def _outcome_fields(done: RunDone) -> list[object]:
    return [getattr(done, f.name) for f in dataclasses.fields(RunDone)[1:]]


@dataclass
class Settle:
    workflow_id: str
