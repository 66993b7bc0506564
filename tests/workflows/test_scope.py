"""Tag scope over every workflow and dead-letter use case, on SQLite and PostgreSQL.

Two tag groups of repositories: `a1`, `a2` (tag alpha) and `b1` (tag beta). An
unscoped admin starts workflows across both; callers scoped to `alpha` must see
only the alpha runs, count only them, and never act on the beta ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import NotFoundError, PermissionDeniedError
from tests.workflows.conftest import Harness, harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: these hold for every engine (see `conftest.ENGINES`)."""

FLEET = {"a1": ["alpha"], "a2": ["alpha"], "b1": ["beta"]}
WORKFLOWS = {
    "mark": {"argv": ["sh", "-c", "echo scopemarker in $(basename $PWD)"], "timeout_seconds": 20},
    "fail": {"argv": ["sh", "-c", "echo broken in $(basename $PWD); exit 3"], "timeout_seconds": 20},
    "slow": {"argv": ["sleep", "30"], "timeout_seconds": 60},
}
ALPHA_VIEWER = Principal("vera", "viewer", frozenset({"alpha"}))
ALPHA_OPERATOR = Principal("otto", "operator", frozenset({"alpha"}))
ALPHA_ADMIN = Principal("ada", "admin", frozenset({"alpha"}))
IMPOSTOR = Principal(ADMIN.subject, "viewer", frozenset({"alpha"}))
"""A token whose subject is the admin's: the same name must widen nothing."""
ALPHA_CALLERS = (ALPHA_VIEWER, ALPHA_OPERATOR, ALPHA_ADMIN, IMPOSTOR)


async def _run(h: Harness, workflow: str, repos: list[str]) -> str:
    workflow_id = (await h.service.trigger(ADMIN, workflow, repos=repos)).workflow_id
    await h.wait(workflow_id)
    return workflow_id


async def test_reads_show_only_runs_in_scope(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        both = await _run(h, "mark", ["a1", "a2", "b1"])
        beta_only = await _run(h, "mark", ["b1"])
        failing_beta = await _run(h, "fail", ["b1"])

        everything = await h.service.list(ADMIN)
        assert {w.workflow_id for w in everything.workflows} == {both, beta_only, failing_beta}
        for caller in ALPHA_CALLERS:
            assert [w.workflow_id for w in (await h.service.list(caller)).workflows] == [both]
            assert [r.repo for r in (await h.service.status(caller, both)).runs] == ["a1", "a2"]
            page = await h.service.status(caller, both, limit=1)
            assert (page.counts, page.total, [r.repo for r in page.runs]) == ({"succeeded": 2}, 2, ["a1"])
            assert (await h.service.list(caller)).total == 1
            for hidden in (beta_only, failing_beta):
                with pytest.raises(NotFoundError):
                    await h.service.status(caller, hidden)
                with pytest.raises(NotFoundError):  # a prefix does not reach outside the scope either
                    await h.service.status(caller, hidden[:20])

            hits = (await h.service.search(caller, "scopemarker")).hits
            assert sorted(hit.repo for hit in hits) == ["a1", "a2"]
            assert (await h.service.search(caller, "broken")).hits == []

            stats = {s.workflow: s for s in (await h.service.statistics(caller)).workflows}
            assert set(stats) == {"mark"}, "a workflow with no run in scope is not counted"
            assert stats["mark"].workflows_by_status == {"succeeded": 1}
            assert stats["mark"].repo_runs_by_status == {"succeeded": 2}

        admin_stats = {s.workflow: s for s in (await h.service.statistics(ADMIN)).workflows}
        assert admin_stats["mark"].workflows_by_status == {"succeeded": 2}
        assert admin_stats["mark"].repo_runs_by_status == {"succeeded": 4}
        assert admin_stats["fail"].repo_runs_by_status == {"failed": 1}


async def test_a_scoped_operator_cannot_cancel_runs_outside_its_scope(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        across = (await h.service.trigger(ADMIN, "slow", repos=["a1", "b1"])).workflow_id
        beta_only = (await h.service.trigger(ADMIN, "slow", repos=["b1"])).workflow_id
        own = (await h.service.trigger(ALPHA_OPERATOR, "slow")).workflow_id
        await h.wait_for(across, "running")

        with pytest.raises(PermissionDeniedError, match="outside your tag scope"):
            await h.service.cancel(ALPHA_OPERATOR, across)
        with pytest.raises(NotFoundError):
            await h.service.cancel(ALPHA_OPERATOR, beta_only)
        with pytest.raises(PermissionDeniedError, match="operator"):
            await h.service.cancel(ALPHA_VIEWER, own)
        untouched = await h.service.status(ADMIN, across)
        assert not untouched.counts.get("cancelled")
        assert untouched.finished_at is None
        assert (await h.service.status(ADMIN, beta_only)).finished_at is None

        cancelled = await h.wait((await h.service.cancel(ALPHA_OPERATOR, own)).workflow_id)
        assert cancelled.status == "cancelled"
        assert sorted(r.repo for r in cancelled.runs) == ["a1", "a2"]
        for workflow_id in (across, beta_only):
            assert (await h.wait((await h.service.cancel(ADMIN, workflow_id)).workflow_id)).status == (
                "cancelled"
            )


async def test_dead_letters_follow_the_scope(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        await _run(h, "fail", ["a1", "a2", "b1"])
        every = (await h.service.dead_letters(ADMIN)).dead_letters
        by_repo = {d.repo: d.dead_letter_id for d in every}
        assert sorted(by_repo) == ["a1", "a2", "b1"]

        for caller in (ALPHA_VIEWER, ALPHA_OPERATOR):
            with pytest.raises(PermissionDeniedError):
                await h.service.dead_letters(caller)
        scoped = (await h.service.dead_letters(ALPHA_ADMIN)).dead_letters
        assert sorted(d.repo for d in scoped) == ["a1", "a2"]
        with pytest.raises(NotFoundError):
            await h.service.dead_letter(ALPHA_ADMIN, by_repo["b1"])
        with pytest.raises(NotFoundError):
            await h.service.retry_dead_letter(ALPHA_ADMIN, by_repo["b1"])
        with pytest.raises(PermissionDeniedError, match="without tags"):
            await h.service.heal(ALPHA_ADMIN)

        assert await h.service.purge_dead_letters(ALPHA_ADMIN, resolved_only=False) == 2
        assert [d.repo for d in (await h.service.dead_letters(ADMIN)).dead_letters] == ["b1"]
        retried = await h.service.retry_dead_letter(ADMIN, by_repo["b1"])
        assert retried.status == "retrying"


async def test_errors_echo_a_bounded_part_of_the_input(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        ghosts = [f"ghost-{i}-{'x' * 200}" for i in range(1000)]
        with pytest.raises(NotFoundError, match="and 995 more") as refused:
            await h.service.trigger(ADMIN, "mark", repos=ghosts)
        assert len(str(refused.value)) < 1000
        with pytest.raises(NotFoundError) as unknown:
            await h.service.trigger(ADMIN, "w" * 100_000, repos=["a1"])
        assert len(str(unknown.value)) < 500
        with pytest.raises(NotFoundError) as missing:
            await h.service.status(ADMIN, "0" * 100_000)
        assert len(str(missing.value)) < 500
