"""Watching a big workflow is cheap: the status carries counts by status and one page of runs,
filtered by status, in the caller's scope; every other list-shaped answer is paged too."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError
from tests.workflows.conftest import harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: these hold for every engine (see `conftest.ENGINES`)."""

FLEET = {"a1": ["alpha"], "a2": ["alpha"], "a3": ["alpha"], "a4": ["alpha"], "b1": ["beta"], "b2": ["beta"]}
WORKFLOWS = {
    "mixed": {
        "argv": ["sh", "-c", 'case "$(basename "$PWD")" in a4|b*) exit 3;; esac; echo ok'],
        "timeout_seconds": 20,
    }
}
ALPHA = Principal("vera", "viewer", frozenset({"alpha"}))


async def test_status_pages_runs_and_counts_them_all(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        workflow_id = (await h.service.trigger(ADMIN, "mixed")).workflow_id
        await h.wait(workflow_id)
        pages, cursor = [], None
        while True:
            page = await h.service.status(ADMIN, workflow_id, limit=4, cursor=cursor)
            assert page.counts == {"succeeded": 3, "failed": 3}
            assert page.total == 6
            pages.append([r.repo for r in page.runs])
            if (cursor := page.next_cursor) is None:
                break
        assert pages == [["a1", "a2", "a3", "a4"], ["b1", "b2"]]

        failed = await h.service.status(ADMIN, workflow_id, run_status="failed", limit=2)
        assert ([r.repo for r in failed.runs], failed.total) == (["a4", "b1"], 3)
        rest = await h.service.status(
            ADMIN, workflow_id, run_status="failed", limit=2, cursor=failed.next_cursor
        )
        assert ([r.repo for r in rest.runs], rest.next_cursor) == (["b2"], None)

        counts_only = await h.service.status(ADMIN, workflow_id, limit=0)
        assert (counts_only.runs, counts_only.runs_in_scope, counts_only.done) == ([], 6, 6)
        assert len((await h.service.status(ADMIN, workflow_id)).runs) == 6, "no limit: every run"

        with pytest.raises(InvalidArgumentError, match="other filters"):
            await h.service.status(ADMIN, workflow_id, limit=2, cursor=failed.next_cursor)
        with pytest.raises(InvalidArgumentError, match="status must be one of"):
            await h.service.status(ADMIN, workflow_id, run_status="exploded")
        with pytest.raises(InvalidArgumentError, match="limit"):
            await h.service.status(ADMIN, workflow_id, limit=201)


async def test_a_scoped_caller_pages_and_counts_only_its_runs(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        workflow_id = (await h.service.trigger(ADMIN, "mixed")).workflow_id
        await h.wait(workflow_id)
        page = await h.service.status(ALPHA, workflow_id, limit=3)
        assert page.counts == {"succeeded": 3, "failed": 1}
        assert ([r.repo for r in page.runs], page.total) == (["a1", "a2", "a3"], 4)
        rest = await h.service.status(ALPHA, workflow_id, limit=3, cursor=page.next_cursor)
        assert ([r.repo for r in rest.runs], rest.next_cursor) == (["a4"], None)
        failed = await h.service.status(ALPHA, workflow_id, run_status="failed")
        assert ([r.repo for r in failed.runs], failed.total) == (["a4"], 1)


async def test_every_list_is_paged_with_a_total(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        for _ in range(2):
            await h.wait((await h.service.trigger(ADMIN, "mixed")).workflow_id)
        await h.wait((await h.service.trigger(ADMIN, "git-status", repos=["a1"])).workflow_id)

        listed = await h.service.list(ADMIN, limit=2)
        assert (len(listed.workflows), listed.total) == (2, 3)
        last = await h.service.list(ADMIN, limit=2, cursor=listed.next_cursor)
        assert (len(last.workflows), last.next_cursor) == (1, None)
        assert (await h.service.list(ALPHA, workflow="mixed")).total == 2

        letters, cursor, seen = None, None, []
        while letters is None or cursor is not None:
            letters = await h.service.dead_letters(ADMIN, limit=4, cursor=cursor)
            assert letters.total == 6
            seen += [d.dead_letter_id for d in letters.dead_letters]
            cursor = letters.next_cursor
        assert len(set(seen)) == 6
        assert (await h.service.dead_letters(Principal("ada", "admin", frozenset({"alpha"})))).total == 2

        stats = await h.service.statistics(ADMIN, limit=1)
        assert ([s.workflow for s in stats.workflows], stats.total) == (["git-status"], 2)
        more = await h.service.statistics(ADMIN, limit=1, cursor=stats.next_cursor)
        assert ([s.workflow for s in more.workflows], more.next_cursor) == (["mixed"], None)
        with pytest.raises(InvalidArgumentError, match="limit"):
            await h.service.dead_letters(ADMIN, limit=0)
