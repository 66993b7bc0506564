"""Two local engines on one database share a workflow's runs, and no run executes twice.

An engine claims only about a fraction of a second of work per slot (`pacing.py`), so the
engine that sees a trigger first does not take every run of it into its local queue while the
other sits idle. The timing (two replicas in at most 0.6 x the time of one) is measured in
`bench/replicas.py`, not here.
"""

from __future__ import annotations

from pathlib import Path

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
        "pause": {"argv": ["sh", "-c", 'sleep 0.2 && pwd >> "$0"', str(ledger)], "timeout_seconds": 30}
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
