"""What happens after an attempt, decided without a database: any engine can call these.

The local engine applies them in one transaction per cycle (`records.py`); an engine on
another runtime (a durable-execution service, say) calls the same functions from its own
activities, so retries, breakers and the dead-letter queue behave alike whichever engine runs
a workflow. Each function takes plain values and returns plain values: no session, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import tenacity

from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.orchestrator.workflows.states import RunStatus

__all__ = [
    "AttemptResult",
    "Circuit",
    "DeadLetterAction",
    "Verdict",
    "backoff_seconds",
    "dead_letter_action",
    "judge_attempt",
    "may_probe",
    "next_circuit",
]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt as any executor reports it (the local one's `process.ProcessResult` is this)."""

    exit_code: int | None
    """None when the program could not be started."""
    timed_out: bool
    cancelled: bool
    duration_seconds: float
    output_tail: str
    output_bytes: int
    error: str | None = None
    log_written: bool = False
    """True when a log file was written: the output outgrew the tail, or the attempt did not succeed."""


# --- retry -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """An attempt judged: its own status, and whether the run goes round again."""

    status: RunStatus
    """The attempt's status (what its attempt row says)."""
    retry: bool

    @property
    def run_status(self) -> RunStatus:
        """The run's next status: queued again for a retry, else the attempt's own."""
        return RunStatus.QUEUED if self.retry else self.status


def judge_attempt(result: AttemptResult, *, attempt: int, max_attempts: int, policy: RetryPolicy) -> Verdict:
    """A failure or timeout is retried while attempts remain and the policy calls it retryable;
    a cancel or success never is."""
    if result.cancelled:
        status = RunStatus.CANCELLED
    elif result.timed_out:
        status = RunStatus.TIMED_OUT
    else:
        status = RunStatus.SUCCEEDED if result.exit_code == 0 else RunStatus.FAILED
    retry = (
        status in (RunStatus.FAILED, RunStatus.TIMED_OUT)
        and attempt < max_attempts
        and policy.is_retryable(exit_code=result.exit_code, timed_out=result.timed_out)
    )
    return Verdict(status, retry)


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: tenacity's exponential backoff with jitter."""
    wait = tenacity.wait_exponential_jitter(
        multiplier=policy.initial_backoff_seconds,
        max=policy.max_backoff_seconds,
        exp_base=policy.multiplier,
        jitter=policy.jitter_seconds,
    )
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


# --- circuit breaker ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Circuit:
    """A repository's breaker as a value (`models.CircuitState` is its row)."""

    state: str = "closed"
    """closed | open | half_open"""
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    probe_run_id: str | None = None


def next_circuit(current: Circuit, *, success: bool, threshold: int, now: datetime) -> Circuit:
    """The breaker after a run's final outcome: a success closes it; a failure counts, and opens
    it at the threshold or when it was the half-open probe."""
    if success:
        return Circuit()
    failures = current.consecutive_failures + 1
    if current.state == "half_open" or failures >= threshold:
        return Circuit("open", failures, now, None)
    return Circuit(current.state, failures, current.opened_at, None)


def may_probe(current: Circuit, run_id: str, *, now: datetime, cooldown_seconds: float) -> Circuit | None:
    """Whether a run of a repository whose breaker is not closed may run: the breaker it leaves
    (half-open, with this run as its probe, once the cooldown passed), or None to skip the run.
    A half-open breaker lets only its probe through."""
    if current.state == "half_open":
        return current if current.probe_run_id == run_id else None
    if current.state == "closed":
        return current
    if current.opened_at is None or (now - current.opened_at).total_seconds() < cooldown_seconds:
        return None
    return Circuit("half_open", current.consecutive_failures, current.opened_at, run_id)


# --- dead letters ---------------------------------------------------------------------------


class DeadLetterAction(StrEnum):
    FILE = "file"
    """A final failure: file it (or reopen the run's entry, when this was a DLQ retry)."""
    RESOLVE = "resolve"
    """A DLQ retry succeeded: its entry is resolved."""
    REOPEN = "reopen"
    """A DLQ retry was cancelled: its entry is open again, to retry or purge."""
    NONE = "none"


def dead_letter_action(final_status: RunStatus | str, *, dlq_retry: bool) -> DeadLetterAction:
    """What a run's final status means for the dead-letter queue."""
    if final_status == RunStatus.CANCELLED:
        return DeadLetterAction.REOPEN if dlq_retry else DeadLetterAction.NONE
    if final_status == RunStatus.SUCCEEDED:
        return DeadLetterAction.RESOLVE if dlq_retry else DeadLetterAction.NONE
    return DeadLetterAction.FILE
