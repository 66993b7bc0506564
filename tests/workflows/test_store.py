"""Recording (`records`, with the local queue's claims) where two engines or transactions
meet: each workflow is closed once, and a run healed away from an engine cannot leave its workflow open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from mahavishnu.orchestrator.workflows import outcomes, records
from mahavishnu.orchestrator.workflows.decisions import AttemptResult
from mahavishnu.orchestrator.workflows.definitions import RetryPolicy
from mahavishnu.orchestrator.workflows.local import queue
from mahavishnu.orchestrator.workflows.models import RepoRun
from mahavishnu.orchestrator.workflows.records import Claimed, Outcome
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import harness

ME = "engine-under-test"


async def _claim_all(database: Database, workflow_id: str) -> list[Claimed]:
    now = datetime.now(UTC)
    async with database.session() as session:
        claimed, skipped, _, _ = await queue.claim_runs(
            session,
            owner=ME,
            now=now,
            lease_until=now + timedelta(seconds=60),
            limit=100,
            only=[workflow_id],
            cooldown_seconds=30,
        )
    assert skipped == []
    return claimed


async def _record(database: Database, runs: list[Claimed], open_here: set[str]) -> list[records.Closed]:
    now = datetime.now(UTC)
    ok = AttemptResult(0, False, False, 0.01, "ok", 2)
    async with database.session() as session:
        _, closed = await outcomes.record_outcomes(
            session,
            [Outcome(run, ok, now, "/dev/null") for run in runs],
            owner=ME,
            now=now,
            policies={"git-status": RetryPolicy()},
            backoff=lambda policy, attempt: 0.0,
            circuit_threshold=5,
            open_here=open_here,
        )
    return closed


async def test_a_run_healed_away_still_lets_its_workflow_close(database: Database, tmp_path: Path) -> None:
    async with harness(
        database, tmp_path, engine_takes=[], engine="local"
    ) as h:  # the harness engine claims nothing
        summary = await h.service.trigger(ADMIN, "git-status", tag="python")
        first, second = await _claim_all(database, summary.workflow_id)

        # The first run is recorded while this engine still holds the second: no completion check.
        assert await _record(database, [first], open_here={summary.workflow_id}) == []

        # Meanwhile another engine healed the second run away and finished it.
        async with database.session() as session:
            await session.execute(
                update(RepoRun).where(RepoRun.id == second.run_id).values(status="succeeded", owner=None)
            )
        # This engine's late outcome for it is not recorded, but the workflow is closed now.
        [closed] = await _record(database, [second], open_here=set())
        assert (closed.id, closed.status) == (summary.workflow_id, "succeeded")
        view = await h.service.status(ADMIN, summary.workflow_id)
        assert view.finished_at is not None


async def test_a_workflow_is_closed_once_however_often_it_is_checked(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path, engine_takes=[], engine="local") as h:
        summary = await h.service.trigger(ADMIN, "git-status", tag="python")
        runs = await _claim_all(database, summary.workflow_id)
        assert [c.id for c in await _record(database, runs, open_here=set())] == [summary.workflow_id]
        async with database.session() as session:
            again = await records.finalize_workflows(session, {summary.workflow_id}, datetime.now(UTC))
        assert again == []


async def test_the_maintain_sweep_closes_a_workflow_every_check_missed(
    database: Database, tmp_path: Path
) -> None:
    """All runs final, workflow still open: what a cancel and a record racing each other leave."""
    async with harness(database, tmp_path, engine_takes=[], engine="local") as h:
        summary = await h.service.trigger(ADMIN, "git-status", tag="python")
        async with database.session() as session:
            await session.execute(
                update(RepoRun)
                .where(RepoRun.workflow_id == summary.workflow_id)
                .values(status="succeeded", finished_at=datetime.now(UTC))
            )
        await h.maintain()
        await h.maintain()  # a second sweep finds nothing more to close
        view = await h.service.status(ADMIN, summary.workflow_id)
        counted = h.metrics.registry.get_sample_value(
            "mahavishnu_workflows_total", {"workflow": "git-status", "status": "succeeded"}
        )
    assert view.status == "succeeded"
    assert view.finished_at is not None
    assert counted == 1
