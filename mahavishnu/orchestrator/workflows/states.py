"""The statuses a workflow and a repo run go through, and how runs roll up into a workflow."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = ["RunStatus", "WorkflowStatus", "rollup"]


class RunStatus(StrEnum):
    QUEUED = "queued"
    """Waiting for a slot, or for its next attempt's backoff to pass."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED_CIRCUIT_OPEN = "skipped_circuit_open"

    @property
    def final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


FINAL_RUN_STATUSES = tuple(s.value for s in RunStatus if s.final)


class WorkflowStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


def rollup(run_statuses: Iterable[str], *, cancel_requested: bool) -> WorkflowStatus:
    """A finished workflow's status from its runs' final statuses."""
    statuses = list(run_statuses)
    if cancel_requested:
        return WorkflowStatus.CANCELLED
    succeeded = sum(1 for s in statuses if s == RunStatus.SUCCEEDED)
    if succeeded == len(statuses):
        return WorkflowStatus.SUCCEEDED
    return WorkflowStatus.PARTIAL if succeeded else WorkflowStatus.FAILED
