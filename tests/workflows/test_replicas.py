"""Two local engines on one database share a workflow's runs, and no run executes twice.

An engine claims only about a fraction of a second of work per slot (`pacing.py`), so the
engine that sees a trigger first does not take every run of it into its local queue while the
other sits idle. The timing (two replicas in at most 0.6 x the time of one) is measured in
`bench/replicas.py`, not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.orchestrator.service import engine_config
from mahavishnu.orchestrator.workflows.local import LocalEngine
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.workflows.conftest import harness

REPOS = 16
SLOTS = 2


def finished_by(metrics: Metrics) -> float:
    """Runs the engine reporting to `metrics` recorded as succeeded."""
    value = metrics.registry.get_sample_value(
        "mahavishnu_repo_runs_total", {"workflow": "pause", "status": "succeeded"}
    )
    return value or 0.0


async def test_two_engines_share_a_workflow_and_run_each_repository_once(
    database: Database, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    workflows = {
        "pause": {"argv": ["sh", "-c", 'sleep 0.3 && pwd >> "$0"', str(ledger)], "timeout_seconds": 30}
    }
    fleet = {f"repo-{i:02d}": ["shared"] for i in range(REPOS)}
    async with harness(
        database, tmp_path, fleet=fleet, workflows=workflows, max_concurrent_runs=SLOTS, engine="local"
    ) as first:
        other_metrics = Metrics()
        other = LocalEngine(
            database,
            engine_config(first.settings),
            first.settings.workflow_definitions(),
            WorkflowMetrics(other_metrics),
        )
        async with other.running():
            summary = await first.service.trigger(ADMIN, "pause", tag="shared")
            view = await first.wait(summary.workflow_id, within=60)
    executed = ledger.read_text().splitlines()
    assert view.counts == {"succeeded": REPOS}
    assert sorted(executed) == sorted(str(first.repo(name)) for name in fleet)  # each exactly once
    assert {run.attempt for run in view.runs} == {1}
    shares = finished_by(first.metrics), finished_by(other_metrics)
    assert sum(shares) == REPOS
    assert min(shares) > 0, shares  # both engines executed runs


async def test_an_idle_engine_hears_of_work_submitted_elsewhere(database: Database, tmp_path: Path) -> None:
    """PostgreSQL's NOTIFY wakes it: with a poll of an hour it would not look on its own."""
    if database.dialect != "postgresql":
        pytest.skip("engines on SQLite learn of new work by polling")
    async with harness(database, tmp_path, engine_takes=["another-workflow"], engine="local") as first:
        settings = first.settings.model_copy(update={"engine_poll_seconds": 3600.0})
        other_metrics = Metrics()
        other = LocalEngine(
            database, engine_config(settings), settings.workflow_definitions(), WorkflowMetrics(other_metrics)
        )
        async with other.running():
            summary = await first.service.trigger(ADMIN, "git-status", tag="python")
            view = await first.wait(summary.workflow_id, within=60)
    assert view.counts == {"succeeded": 2}
    assert (
        other_metrics.registry.get_sample_value(
            "mahavishnu_repo_runs_total", {"workflow": "git-status", "status": "succeeded"}
        )
        == 2
    )
