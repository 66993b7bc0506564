"""Watchers share status answers of a running workflow for at most 0.1 s; a closed workflow is
read fresh, and this service's own writes (a cancel) drop the shared pages at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from mahavishnu.orchestrator.workflows.pages import WorkflowStatusPage
from mahavishnu.orchestrator.workflows.status_cache import StatusCache
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import agent_workflow, harness


def _page(finished: bool) -> WorkflowStatusPage:
    now = datetime.now(UTC)
    return WorkflowStatusPage(
        workflow_id="w",
        workflow="x",
        status="succeeded" if finished else "running",
        requested_by="me",
        created_at=now,
        finished_at=now if finished else None,
        params={},
        started_at=now,
        counts={},
        runs=[],
        total=0,
        next_cursor=None,
    )


def test_a_running_page_is_shared_within_one_key_until_it_expires() -> None:
    cache = StatusCache(ttl=0.05)
    page = _page(finished=False)
    cache.put("w", ("scope-a",), page)
    assert cache.get("w", ("scope-a",)) is page
    assert cache.get("w", ("scope-b",)) is None  # another scope never shares it
    assert cache.get("v", ("scope-a",)) is None
    time.sleep(0.1)
    assert cache.get("w", ("scope-a",)) is None


def test_a_finished_page_is_never_kept_and_forget_drops_pages() -> None:
    cache = StatusCache(ttl=60)
    cache.put("w", "k", _page(finished=True))
    assert cache.get("w", "k") is None
    cache.put("w", "k", _page(finished=False))
    cache.put("v", "k", _page(finished=False))
    cache.forget("w")
    assert cache.get("w", "k") is None
    assert cache.get("v", "k") is not None
    cache.forget()
    assert cache.get("v", "k") is None


def test_the_cache_stays_bounded() -> None:
    cache = StatusCache(ttl=60, most=3)
    for i in range(10):
        cache.put(f"w{i}", "k", _page(finished=False))
    assert sum(cache.get(f"w{i}", "k") is not None for i in range(10)) == 3
    assert cache.get("w9", "k") is not None


async def test_a_cancel_is_seen_at_once_by_a_watcher(database: Database, tmp_path: Path) -> None:
    workflows = {"slow": agent_workflow(timeout_seconds=120)}
    async with harness(database, tmp_path, workflows=workflows, max_concurrent_runs=1) as h:
        summary = await h.service.trigger(ADMIN, "slow", params={"prompt": "sleep:60"})
        await h.wait_for(summary.workflow_id, "running")
        watched = await h.service.status(ADMIN, summary.workflow_id, limit=0, shared=True)
        assert (watched.status, watched.counts.get("cancelled")) == ("running", None)
        assert await h.service.status(ADMIN, summary.workflow_id, limit=0, shared=True) is watched
        await h.service.cancel(ADMIN, summary.workflow_id)
        after = await h.service.status(ADMIN, summary.workflow_id, limit=0, shared=True)
        assert after is not watched  # read again: the cancel dropped the shared page
        final = await h.wait(summary.workflow_id, within=10)
        closed = await h.service.status(ADMIN, summary.workflow_id, limit=0, shared=True)
    assert final.status == closed.status == "cancelled"
