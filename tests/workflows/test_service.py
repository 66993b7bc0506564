"""Workflow use cases: validation up front, roles and tag scopes, listing, search, statistics, healing."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mahavishnu.orchestrator.workflows.models import Instance, RepoRun
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from tests.workflows.conftest import agent_workflow, harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: these hold for every engine (see `conftest.ENGINES`)."""

VIEWER = Principal("vera", "viewer")
PY_OPERATOR = Principal("otto", "operator", frozenset({"python"}))


async def test_validation_happens_before_anything_is_stored(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        with pytest.raises(NotFoundError, match="no workflow named 'nope'"):
            await h.service.trigger(ADMIN, "nope", tag="python")
        with pytest.raises(InvalidArgumentError, match="no repositories match"):
            await h.service.trigger(ADMIN, "git-status", tag="cobol")
        with pytest.raises(NotFoundError, match="'ghost'"):
            await h.service.trigger(ADMIN, "git-status", repos=["alpha", "ghost"])
        with pytest.raises(InvalidArgumentError, match="required"):
            await h.service.trigger(ADMIN, "agent", tag="python")
        assert (await h.service.list(ADMIN)).workflows == []


async def test_missing_repo_folder_is_refused_up_front(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        import shutil

        shutil.rmtree(h.repo("beta"))
        with pytest.raises(InvalidArgumentError, match="beta"):
            await h.service.trigger(ADMIN, "git-status", tag="python")


async def test_roles_and_tag_scope(database: Database, tmp_path: Path) -> None:
    workflows = {"dangerous": agent_workflow(admin_only=True)}
    async with harness(database, tmp_path, workflows=workflows) as h:
        with pytest.raises(PermissionDeniedError, match="operator"):
            await h.service.trigger(VIEWER, "git-status", tag="python")
        with pytest.raises(NotFoundError, match="gamma"):
            await h.service.trigger(PY_OPERATOR, "git-status", repos=["gamma"])
        # An admin-only workflow is as unknown to an operator as a missing one; errors never name it.
        for name in ("dangerous", "nope"):
            with pytest.raises(NotFoundError, match=f"no workflow named '{name}'") as refused:
                await h.service.trigger(PY_OPERATOR, name, params={"prompt": "x"})
            assert "dangerous" not in str(refused.value).split("known workflows:")[1]
        assert "dangerous" not in [d.name for d in h.service.definitions(PY_OPERATOR)]

        # Without a tag, an operator's workflow covers only the repos in its scope.
        summary = await h.service.trigger(PY_OPERATOR, "git-status")
        view = await h.wait(summary.workflow_id)
        assert sorted(r.repo for r in view.runs) == ["alpha", "beta"]

        everything = await h.wait((await h.service.trigger(ADMIN, "git-status")).workflow_id)
        rust_only = Principal("rusty", "viewer", frozenset({"rust"}))
        assert [r.repo for r in (await h.service.status(rust_only, everything.workflow_id)).runs] == ["gamma"]
        with pytest.raises(NotFoundError):
            await h.service.status(rust_only, summary.workflow_id)

        for call in (
            h.service.dead_letters(PY_OPERATOR),
            h.service.retry_dead_letter(PY_OPERATOR, "x"),
            h.service.purge_dead_letters(PY_OPERATOR),
            h.service.heal(PY_OPERATOR),
        ):
            with pytest.raises(PermissionDeniedError):
                await call


async def test_list_paginates_newest_first_with_filters(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        ids = []
        for _ in range(5):
            ids.append((await h.service.trigger(ADMIN, "git-status", repos=["alpha"])).workflow_id)
        await h.wait(ids[-1])
        failing = (
            await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "exit:4"})
        ).workflow_id
        await h.wait(failing)
        for workflow_id in ids:
            await h.wait(workflow_id)
        seen: list[str] = []
        cursor = None
        while True:
            page = await h.service.list(ADMIN, workflow="git-status", limit=2, cursor=cursor)
            seen += [w.workflow_id for w in page.workflows]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        failed = await h.service.list(ADMIN, status="failed")
        assert [w.workflow_id for w in failed.workflows] == [failing]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await h.service.list(ADMIN, since=future)).workflows == []
        with pytest.raises(InvalidArgumentError, match="status must be one of"):
            await h.service.list(ADMIN, status="exploded")
        with pytest.raises(InvalidArgumentError, match="ISO 8601"):
            await h.service.list(ADMIN, since="yesterday")
        with pytest.raises(InvalidArgumentError, match="cursor"):
            await h.service.list(ADMIN, cursor="!!!")


async def test_search_finds_output_and_errors(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        ok = await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "zanzibar"})
            ).workflow_id
        )
        bad = await h.wait(
            (await h.service.trigger(ADMIN, "agent", repos=["beta"], params={"prompt": "exit:9"})).workflow_id
        )
        hits = (await h.service.search(ADMIN, "zanzibar")).hits
        assert [(x.workflow_id, x.repo) for x in hits] == [(ok.workflow_id, "alpha")]
        assert "zanzibar" in hits[0].excerpt
        errors = (await h.service.search(ADMIN, "exited code 9")).hits
        assert [x.workflow_id for x in errors] == [bad.workflow_id]
        assert (await h.service.search(ADMIN, "nothing-like-this")).hits == []
        rust_only = Principal("rusty", "viewer", frozenset({"rust"}))
        assert (await h.service.search(rust_only, "zanzibar")).hits == []
        with pytest.raises(InvalidArgumentError):
            await h.service.search(ADMIN, "   ")


async def test_statistics(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", tag="python", params={"prompt": "fail-in:beta"})
            ).workflow_id
        )
        await h.wait((await h.service.trigger(ADMIN, "git-status", tag="python")).workflow_id)
        stats = {s.workflow: s for s in (await h.service.statistics(ADMIN)).workflows}
    assert stats["agent"].workflows_by_status == {"partial": 1}
    assert stats["agent"].repo_runs_by_status == {"failed": 1, "succeeded": 1}
    assert stats["git-status"].workflows_by_status == {"succeeded": 1}
    durations = stats["git-status"].run_duration_seconds
    assert durations.p50 is not None
    assert durations.p99 is not None
    assert 0 < durations.p50 <= durations.p99


@pytest.mark.parametrize("policy", ["requeue", "fail"])
async def test_heal_takes_runs_of_a_dead_engine(database: Database, tmp_path: Path, policy: str) -> None:
    # The local engine's own mechanics: a dead engine of this host is an instance row with a dead pid.
    async with harness(database, tmp_path, heal_policy=policy, engine="local") as h:
        view = await h.wait((await h.service.trigger(ADMIN, "git-status", repos=["alpha"])).workflow_id)
        now = datetime.now(UTC)
        dead = Instance(
            id="ghost-engine", hostname=socket.gethostname(), pid=2**22 + 7, started_at=now, heartbeat_at=now
        )
        async with database.session() as session:
            session.add(dead)
            run = await session.get(RepoRun, view.runs[0].run_id)
            assert run is not None
            run.status, run.owner, run.finished_at = "running", "ghost-engine", None
            run.lease_expires_at = now + timedelta(
                minutes=5
            )  # lease still valid: only the dead pid gives it away
            from mahavishnu.orchestrator.workflows.models import Workflow

            workflow = await session.get(Workflow, view.workflow_id)
            assert workflow is not None
            workflow.status, workflow.finished_at = "running", None
        assert await h.service.heal(ADMIN) == 1
        healed = await h.wait(view.workflow_id)
    run_view = healed.runs[0]
    if policy == "requeue":
        assert run_view.status == "succeeded"
        assert run_view.attempt == 2
    else:
        assert run_view.status == "failed"
        assert "heal policy: fail" in (run_view.error or "")
