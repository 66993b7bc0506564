"""The pure decisions every engine shares: retries, the circuit breaker, the dead-letter queue.

No database, no engine: these are the functions an engine on another runtime calls, so the
rules they encode are pinned here on their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mahavishnu.orchestrator.workflows.decisions import (
    AttemptResult,
    Circuit,
    DeadLetterAction,
    backoff_seconds,
    dead_letter_action,
    judge_attempt,
    may_probe,
    next_circuit,
)
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.orchestrator.workflows.states import RunStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RETRY_3 = RetryPolicy(max_attempts=3)


def result(exit_code: int | None = 0, *, timed_out: bool = False, cancelled: bool = False) -> AttemptResult:
    return AttemptResult(exit_code, timed_out, cancelled, 0.1, "", 0)


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt_result", "attempt", "expected"),
    [
        (result(0), 1, (RunStatus.SUCCEEDED, False)),
        (result(1), 1, (RunStatus.FAILED, True)),
        (result(1), 3, (RunStatus.FAILED, False)),  # attempts used up
        (result(None, timed_out=True), 1, (RunStatus.TIMED_OUT, True)),
        (result(None, cancelled=True), 1, (RunStatus.CANCELLED, False)),
        (result(None), 1, (RunStatus.FAILED, False)),  # could not start: not retryable
    ],
)
def test_an_attempt_is_judged_and_retried_while_attempts_remain(
    attempt_result: AttemptResult, attempt: int, expected: tuple[RunStatus, bool]
) -> None:
    verdict = judge_attempt(attempt_result, attempt=attempt, max_attempts=3, policy=RETRY_3)
    assert (verdict.status, verdict.retry) == expected
    assert verdict.run_status == (RunStatus.QUEUED if verdict.retry else verdict.status)


def test_the_policy_decides_which_failures_are_worth_another_attempt() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on_exit_codes=(75,), retry_on_timeout=False)
    assert judge_attempt(result(75), attempt=1, max_attempts=3, policy=policy).retry
    assert not judge_attempt(result(1), attempt=1, max_attempts=3, policy=policy).retry
    assert not judge_attempt(result(None, timed_out=True), attempt=1, max_attempts=3, policy=policy).retry


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_seconds=1, multiplier=2, max_backoff_seconds=5, jitter_seconds=0)
    assert [backoff_seconds(policy, attempt) for attempt in (1, 2, 3, 4)] == [1, 2, 4, 5]


# --- circuit breaker -------------------------------------------------------------------------------


def test_failures_open_the_breaker_at_the_threshold_and_a_success_closes_it() -> None:
    circuit = Circuit()
    circuit = next_circuit(circuit, success=False, threshold=2, now=NOW)
    assert (circuit.state, circuit.consecutive_failures) == ("closed", 1)
    circuit = next_circuit(circuit, success=False, threshold=2, now=NOW)
    assert (circuit.state, circuit.consecutive_failures, circuit.opened_at) == ("open", 2, NOW)
    assert next_circuit(circuit, success=True, threshold=2, now=NOW) == Circuit()


def test_a_failed_probe_reopens_the_breaker_at_once() -> None:
    probing = Circuit("half_open", 5, NOW, "run-1")
    later = NOW + timedelta(seconds=1)
    assert next_circuit(probing, success=False, threshold=100, now=later) == Circuit("open", 6, later, None)


def test_an_open_breaker_skips_runs_until_the_cooldown_then_lets_one_probe() -> None:
    opened = Circuit("open", 3, NOW, None)
    assert may_probe(opened, "run-1", now=NOW + timedelta(seconds=29), cooldown_seconds=30) is None
    probing = may_probe(opened, "run-1", now=NOW + timedelta(seconds=30), cooldown_seconds=30)
    assert probing == Circuit("half_open", 3, NOW, "run-1")
    assert may_probe(probing, "run-1", now=NOW, cooldown_seconds=30) == probing  # the probe itself
    assert may_probe(probing, "run-2", now=NOW, cooldown_seconds=30) is None  # one probe at a time


def test_a_closed_breaker_lets_every_run_through() -> None:
    assert may_probe(Circuit(), "run-1", now=NOW, cooldown_seconds=30) == Circuit()


# --- dead letters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "dlq_retry", "action"),
    [
        (RunStatus.FAILED, False, DeadLetterAction.FILE),
        (RunStatus.TIMED_OUT, True, DeadLetterAction.FILE),  # a DLQ retry failing again: reopened
        (RunStatus.SUCCEEDED, True, DeadLetterAction.RESOLVE),
        (RunStatus.SUCCEEDED, False, DeadLetterAction.NONE),
        (RunStatus.CANCELLED, True, DeadLetterAction.REOPEN),
        (RunStatus.CANCELLED, False, DeadLetterAction.NONE),
    ],
)
def test_a_final_status_decides_the_dead_letter(
    status: RunStatus, dlq_retry: bool, action: DeadLetterAction
) -> None:
    assert dead_letter_action(status, dlq_retry=dlq_retry) is action
