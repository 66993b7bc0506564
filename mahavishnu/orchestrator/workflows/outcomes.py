"""Recording finished attempts, for any engine: each run's next state, its repository's breaker,
its dead letter, and the workflows that closed.

The rules are the pure functions of `decisions.py`; this module applies them to the tables, in
the caller's transaction (nothing here commits), with executemany: one round trip per batch of
outcomes, not per run. Skipping runs whose repository's breaker is open (`skip_open_circuits`)
lives here too, beside the breaker's other writes: any engine calls it before it executes a run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.orchestrator.workflows import agent_session_outbox
from mahavishnu.orchestrator.workflows.decisions import (
    Circuit,
    DeadLetterAction,
    backoff_seconds,
    dead_letter_action,
    judge_attempt,
    may_probe,
    next_circuit,
)
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.orchestrator.workflows.models import CircuitState, DeadLetter, RepoRun
from mahavishnu.orchestrator.workflows.records import (
    ATTEMPTS,
    RUNS,
    Claimed,
    Closed,
    Outcome,
    finalize_workflows,
    reopen_dead_letters,
)
from mahavishnu.orchestrator.workflows.states import RunStatus
from mahavishnu.platform.ids import new_id

__all__ = ["Backoff", "record_outcomes", "skip_open_circuits"]


# --- circuit breakers ------------------------------------------------------------------------


def _circuit(row: CircuitState | None) -> Circuit:
    if row is None:
        return Circuit()
    return Circuit(row.state, row.consecutive_failures, row.opened_at, row.probe_run_id)


def _store_circuit(row: CircuitState, circuit: Circuit, now: datetime) -> None:
    row.state, row.consecutive_failures = circuit.state, circuit.consecutive_failures
    row.opened_at, row.probe_run_id, row.updated_at = circuit.opened_at, circuit.probe_run_id, now


async def _circuits(
    session: AsyncSession, repos: Collection[str], *, open_only: bool
) -> dict[str, CircuitState]:
    query = select(CircuitState).where(CircuitState.repo.in_(repos))
    if open_only:
        query = query.where(CircuitState.state != "closed")
    return {c.repo: c for c in (await session.scalars(query)).all()}


async def skip_open_circuits(
    session: AsyncSession, claimed: Sequence[Claimed], now: datetime, cooldown_seconds: float
) -> list[Claimed]:
    """Runs just taken whose repository's breaker is open are skipped (final, no attempt);
    once the cooldown passed, one run per repository probes. Returns the skipped runs."""
    rows = await _circuits(session, {c.repo for c in claimed}, open_only=True) if claimed else {}
    skipped = []
    for run in claimed:
        row = rows.get(run.repo)
        if row is None:
            continue
        circuit = may_probe(_circuit(row), run.run_id, now=now, cooldown_seconds=cooldown_seconds)
        if circuit is not None:
            if circuit != _circuit(row):
                _store_circuit(row, circuit, now)
            continue
        skipped.append(run)
        await session.execute(
            update(RepoRun)
            .where(RepoRun.id == run.run_id)
            .values(
                status=RunStatus.SKIPPED_CIRCUIT_OPEN,
                attempt=RepoRun.attempt - 1,  # never executed: not an attempt
                finished_at=now,
                owner=None,
                lease_expires_at=None,
                error=(
                    f"circuit open for {run.repo} after {row.consecutive_failures} consecutive "
                    f"failures; retry after {cooldown_seconds:g} s"
                ),
            )
        )
    return skipped


async def _move_circuits(
    session: AsyncSession, judged: Sequence[Outcome], threshold: int, now: datetime
) -> None:
    """Each repository's breaker after its runs' final outcomes, in order. A success on a
    repository without a breaker row writes none (most repositories never fail)."""
    if not judged:
        return
    rows = await _circuits(session, {o.claimed.repo for o in judged}, open_only=False)
    for outcome in judged:
        repo, success = outcome.claimed.repo, outcome.status == RunStatus.SUCCEEDED
        row = rows.get(repo)
        if row is None and success:
            continue
        circuit = next_circuit(_circuit(row), success=success, threshold=threshold, now=now)
        if row is None:
            row = rows[repo] = CircuitState(repo=repo, state="closed", consecutive_failures=0, updated_at=now)
            session.add(row)
        elif circuit == _circuit(row):
            continue
        _store_circuit(row, circuit, now)


# --- dead letters ------------------------------------------------------------------------------


async def _settle_dead_letters(session: AsyncSession, finals: Sequence[Outcome], now: datetime) -> None:
    """File, resolve or reopen dead letters for runs that just ended (`decisions.dead_letter_action`)."""
    actions: dict[DeadLetterAction, list[Outcome]] = {}
    for outcome in finals:
        action = dead_letter_action(outcome.status, dlq_retry=outcome.claimed.dlq_retry)
        actions.setdefault(action, []).append(outcome)
    for outcome in actions.get(DeadLetterAction.FILE, []):
        await _file_dead_letter(session, outcome, now)
    if resolved := [o.claimed.run_id for o in actions.get(DeadLetterAction.RESOLVE, [])]:
        await session.execute(
            update(DeadLetter)
            .where(DeadLetter.run_id.in_(resolved), DeadLetter.status == "retrying")
            .values(
                status="resolved",
                updated_at=now,
                attempts=select(RepoRun.attempt).where(RepoRun.id == DeadLetter.run_id).scalar_subquery(),
            )
        )
    if reopened := [o.claimed.run_id for o in actions.get(DeadLetterAction.REOPEN, [])]:
        await reopen_dead_letters(session, reopened, now)


async def _file_dead_letter(session: AsyncSession, outcome: Outcome, now: datetime) -> None:
    """Reopen the run's entry if this was a DLQ retry, else file a new one."""
    claimed, error = outcome.claimed, outcome.result.error
    existing = await session.scalar(
        select(DeadLetter).where(DeadLetter.run_id == claimed.run_id, DeadLetter.status != "resolved")
    )
    if existing is not None:
        existing.status, existing.last_error, existing.attempts, existing.updated_at = (
            "open",
            error,
            claimed.attempt,
            now,
        )
        return
    session.add(
        DeadLetter(
            id=new_id(),
            run_id=claimed.run_id,
            workflow_id=claimed.workflow_id,
            workflow_name=claimed.workflow_name,
            repo=claimed.repo,
            inputs={"argv": claimed.argv, "repo_path": claimed.repo_path},
            last_error=error,
            attempts=claimed.attempt,
            retries=0,
            status="open",
            created_at=now,
            updated_at=now,
        )
    )


# --- recording attempts --------------------------------------------------------------------------

Backoff = Callable[[RetryPolicy, int], float]


async def record_outcomes(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    *,
    owner: str,
    now: datetime,
    policies: Mapping[str, RetryPolicy],
    backoff: Backoff = backoff_seconds,
    circuit_threshold: int,
    open_here: Collection[str] = (),
) -> tuple[list[Outcome], list[Closed]]:
    """Write finished attempts: the attempt rows, each run's next state, breakers, dead letters,
    agent runs for Session-Buddy (`agent_session_outbox`), and workflows now complete. Returns
    the outcomes that ended their run, and closed workflows. Outcomes of runs no longer
    `owner`'s (healed away meanwhile) are not written.
    `open_here`: workflows the caller knows are still open (it holds runs of theirs), not checked."""
    still_ours = await _still_owned(session, [o.claimed.run_id for o in outcomes], owner)
    # Keyed on (run, attempt): an attempt reported twice (an executor retried after it had
    # reported) finds its run moved on, and is never recorded twice.
    valid = [o for o in outcomes if still_ours.get(o.claimed.run_id) == o.claimed.attempt]
    # A run healed away may have been its workflow's last open one elsewhere: check those always.
    recorded_runs = {o.claimed.run_id for o in valid}
    lost = {o.claimed.workflow_id for o in outcomes if o.claimed.run_id not in recorded_runs}
    if not valid:
        return [], await finalize_workflows(session, lost, now)
    attempts, updates = [], []
    for outcome in valid:
        policy = policies[outcome.claimed.workflow_name]
        attempt, run_update = _judged_rows(outcome, policy, backoff, now)
        if attempt is not None:
            attempts.append(attempt)
        updates.append(run_update)
    await _write_attempts(session, attempts, updates)
    finals = [o for o in valid if o.status != RunStatus.QUEUED]
    await agent_session_outbox.queue(session, finals, now)
    await _move_circuits(
        session, [o for o in finals if o.status != RunStatus.CANCELLED], circuit_threshold, now
    )
    await _settle_dead_letters(session, finals, now)
    recorded = {o.claimed.workflow_id for o in valid}
    return finals, await finalize_workflows(session, (recorded - set(open_here)) | lost, now)


async def _still_owned(session: AsyncSession, run_ids: Collection[str], owner: str) -> dict[str, int]:
    """The runs among `run_ids` that `owner` still executes, with their current attempt."""
    rows = await session.execute(
        select(RepoRun.id, RepoRun.attempt).where(
            RepoRun.id.in_(run_ids), RepoRun.owner == owner, RepoRun.status == RunStatus.RUNNING
        )
    )
    return {run_id: attempt for run_id, attempt in rows.all()}


def _judged_rows(
    outcome: Outcome, policy: RetryPolicy, backoff: Backoff, now: datetime
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Judge one outcome (sets its `status`): its attempt row (none when it never started) and
    the parameters of its run's update."""
    claimed, result = outcome.claimed, outcome.result
    verdict = judge_attempt(result, attempt=claimed.attempt, max_attempts=claimed.max_attempts, policy=policy)
    outcome.status = verdict.run_status.value
    attempt = None
    if outcome.started:
        attempt = {
            "run_id": claimed.run_id,
            "attempt": claimed.attempt,
            "status": verdict.status.value,
            "exit_code": result.exit_code,
            "error": result.error,
            "started_at": outcome.started_at,
            "finished_at": now,
            "duration_seconds": result.duration_seconds,
        }
    retry_at = now + timedelta(seconds=backoff(policy, claimed.attempt)) if verdict.retry else None
    return attempt, {
        "rid": claimed.run_id,
        "started": outcome.started_at if outcome.started else None,
        "attempt": claimed.attempt if outcome.started else claimed.attempt - 1,
        "status": outcome.status,
        "exit_code": result.exit_code,
        "output_tail": result.output_tail,
        "error": result.error,
        "duration_seconds": result.duration_seconds,
        "log_path": outcome.log_path if result.log_written else None,
        "finished_at": None if verdict.retry else now,
        "next_attempt_at": retry_at,
    }


async def _write_attempts(
    session: AsyncSession, attempts: Sequence[Mapping[str, Any]], updates: Sequence[Mapping[str, Any]]
) -> None:
    """Two executemany statements: the attempt rows, then every run's next state."""
    if attempts:
        await session.execute(insert(ATTEMPTS), list(attempts))
    await session.execute(
        update(RUNS)
        .where(RUNS.c.id == bindparam("rid"))
        .values(
            attempt=bindparam("attempt"),
            started_at=func.coalesce(RUNS.c.started_at, bindparam("started")),
            status=bindparam("status"),
            exit_code=bindparam("exit_code"),
            output_tail=bindparam("output_tail"),
            error=bindparam("error"),
            duration_seconds=bindparam("duration_seconds"),
            log_path=bindparam("log_path"),
            finished_at=bindparam("finished_at"),
            next_attempt_at=bindparam("next_attempt_at"),
            owner=None,
            lease_expires_at=None,
        ),
        list(updates),
    )
