"""One attempt, as a worker thread runs it, and the process-group ledger that guards it.

The engine module keeps to the database side (cycles, maintenance); what happens on a worker
thread between taking a run and handing its outcome back is here: the span and metrics around
the attempt, the environment allowlist, an attempt that cannot even start, and writing each
process group down (`groups.GroupGuard`) so no run outlives its engine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry import trace

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.groups import GroupGuard, reap_dead_ledgers
from mahavishnu.orchestrator.workflows.local.process import Cancellation, ProcessResult, run_attempt
from mahavishnu.orchestrator.workflows.local.run_logs import log_file
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.records import Claimed, Outcome
from mahavishnu.platform.observability import get_logger, trace_context

__all__ = ["execute", "kill_orphaned_groups", "start_guard"]

log = get_logger("mahavishnu.engine")
tracer = trace.get_tracer("mahavishnu.engine")
_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def execute(
    claimed: Claimed,
    cancel: Cancellation,
    *,
    slot: int,
    config: EngineConfig,
    definition: WorkflowDefinition | None,
    metrics: WorkflowMetrics,
    guard: GroupGuard | None,
    began: Callable[[str, datetime], None],
) -> Outcome:
    """Run one attempt in worker thread `slot` (blocking) and return its outcome. `began` hears
    the moment it starts; a run cancelled while it waited for a slot never starts."""
    started_at = datetime.now(UTC)
    log_path = log_file(config.log_dir, claimed.workflow_id, claimed.run_id, claimed.attempt)
    if cancel.requested:
        result = ProcessResult(None, False, True, 0.0, "", 0, "cancelled before it started")
        return Outcome(claimed, result, started_at, str(log_path), started=False)
    began(claimed.run_id, started_at)
    with (
        metrics.active_runs.track_inprogress(),
        tracer.start_as_current_span(
            f"repo_run {claimed.workflow_name}", context=trace_context(claimed.trace_parent)
        ) as span,
    ):
        span.set_attributes(
            {
                "mahavishnu.workflow_id": claimed.workflow_id,
                "mahavishnu.repo": claimed.repo,
                "mahavishnu.attempt": claimed.attempt,
            }
        )
        try:
            result = run_attempt(
                claimed.argv,
                cwd=Path(claimed.repo_path),
                env=_environment(definition),
                timeout_seconds=definition.timeout_seconds if definition else 600.0,
                kill_grace=config.kill_grace_seconds,
                tail_bytes=config.output_tail_bytes,
                log_path=log_path,
                log_max_bytes=config.log_max_bytes,
                cancel=cancel,
                on_start=functools.partial(_record_group, guard, slot),
            )
        except Exception as exc:  # a vanished folder, a full disk: the run fails, the engine goes on
            log.exception("run_crashed", run_id=claimed.run_id, workflow_id=claimed.workflow_id)
            result = ProcessResult(None, False, False, 0.0, "", 0, f"could not run: {type(exc).__name__}")
        span.set_attribute("process.exit_code", -1 if result.exit_code is None else result.exit_code)
    metrics.run_duration.labels(claimed.workflow_name).observe(result.duration_seconds)
    return Outcome(claimed, result, started_at, str(log_path))


def _environment(definition: WorkflowDefinition | None) -> dict[str, str]:
    allowed = (*_BASE_ENV, *(definition.env_allowlist if definition else ()))
    return {name: os.environ[name] for name in allowed if name in os.environ}


# --- process groups ------------------------------------------------------------------------


def start_guard(groups_dir: Path, name: str, slots: int) -> GroupGuard | None:
    """An engine's ledger and reaper. Without them the engine still runs (as before): healing
    then has nothing to kill, so say so loudly."""
    try:
        guard = GroupGuard.start(groups_dir, name, slots)
    except OSError as exc:
        log.error("process_groups_unguarded", reason=f"no ledger: {exc}", folder=str(groups_dir))
        return None
    if guard is None:
        log.warning("process_groups_unguarded", reason="no /proc to tell processes apart")
    elif not guard.reaping:
        log.warning("process_groups_unguarded", reason="no reaper could be started; healing only")
    return guard


def kill_orphaned_groups(groups_dir: Path, *, skip: Path | None) -> None:
    """Kill the process groups of dead engines of this host (their reapers died too), and wait
    until they are gone (blocking: run it in a thread). `skip`: the caller's own ledger."""
    for ledger, result in reap_dead_ledgers(groups_dir, skip=skip).items():
        emit = log.error if result.survivors else log.warning
        emit(
            "orphaned_process_groups_killed", ledger=ledger, groups=result.killed, survivors=result.survivors
        )


def _record_group(guard: GroupGuard | None, slot: int, pid: int) -> None:
    """A worker thread just started a process group: write it down (never raises: the run goes
    on either way, only unguarded)."""
    if guard is None:
        return
    try:
        guard.started(slot, pid)
    except Exception as exc:
        log.warning("process_group_not_recorded", pid=pid, error=f"{type(exc).__name__}: {exc}")
