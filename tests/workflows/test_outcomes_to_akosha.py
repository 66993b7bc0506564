"""Mahavishnu sends each closed workflow's per-repository outcomes to Akosha: queued in the
transaction that closes the workflow (SQLite and PostgreSQL), pushed through the platform's
service client to a real Akosha server, judged there by `analyze_trends`/`detect_anomalies`
over `workflow_failures`; with Akosha down nothing is lost, and it is delivered once it is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.cli import _wired_env
from mahavishnu.orchestrator.outcome_pusher import OutcomePusher, PushMetrics
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows import outcome_outbox
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import TokenVerifier
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import AuthenticationError
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.service_client import BreakerPolicy, RequestRetryPolicy, ServiceClient
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.akosha.outcomes import stored_outcomes
from tests.akosha.test_tools_http import call, ok
from tests.support.akosha import akosha_env, spawn_akosha
from tests.support.server import SECRET, free_port, wait_ready
from tests.workflows.conftest import Harness, agent_workflow, harness

SOURCE = "mahavishnu-ci"
FLEET = {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"], "delta": ["rust"]}
WORKFLOWS = {
    "flaky": agent_workflow(
        retry={"max_attempts": 2, "initial_backoff_seconds": 0.05, "jitter_seconds": 0.01}
    )
}
PROMPT = "fail-in:gamma fail-until:2"
"""Every repository fails its first attempt and passes its second, but gamma fails both."""
EXPECTED = {
    "alpha": ("succeeded", 2),
    "beta": ("succeeded", 2),
    "delta": ("succeeded", 2),
    "gamma": ("failed", 2),
}


async def _run_flaky(h: Harness) -> str:
    summary = await h.service.trigger(ADMIN, "flaky", params={"prompt": PROMPT})
    view = await h.wait(summary.workflow_id)
    assert view.status == "partial", view
    return summary.workflow_id


async def test_a_closed_workflow_is_queued_with_each_repositorys_outcome(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        workflow_id = await _run_flaky(h)
    batch = await outcome_outbox.next_batch(database, max_entries=10, max_outcomes=100)
    assert len(batch.entries) == 1
    assert {o["repo"]: (o["status"], o["attempts"]) for o in batch.outcomes} == EXPECTED
    assert {o["workflow_id"] for o in batch.outcomes} == {workflow_id}
    assert all(o["workflow"] == "flaky" and o["duration_seconds"] > 0 for o in batch.outcomes)
    assert await outcome_outbox.settle(database, batch.entries) == 1
    assert (await outcome_outbox.backlog(database)).count == 0


async def test_a_cancelled_workflow_is_queued_too(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        summary = await h.service.trigger(ADMIN, "flaky", params={"prompt": "sleep:30"})
        await h.wait_for(summary.workflow_id, "running")
        await h.service.cancel(ADMIN, summary.workflow_id)
        await h.wait(summary.workflow_id)
    batch = await outcome_outbox.next_batch(database, max_entries=10, max_outcomes=100)
    assert len(batch.entries) == 1
    assert {o["status"] for o in batch.outcomes} == {"cancelled"}
    assert len(batch.outcomes) == len(FLEET)


async def test_batches_hold_whole_workflows(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        for _ in range(3):
            await h.wait((await h.service.trigger(ADMIN, "git-status")).workflow_id)
    first = await outcome_outbox.next_batch(database, max_entries=10, max_outcomes=5)
    assert (len(first.entries), len(first.outcomes)) == (1, 4), "a second workflow would make 8"
    alone = await outcome_outbox.next_batch(database, max_entries=10, max_outcomes=1)
    assert (len(alone.entries), len(alone.outcomes)) == (1, 4), "a workflow bigger than a batch goes alone"
    every = await outcome_outbox.next_batch(database, max_entries=10, max_outcomes=100)
    assert (len(every.entries), len(every.outcomes)) == (3, 12)


@pytest.fixture
def akosha(tmp_path: Path) -> Iterator[Akosha]:
    folder = tmp_path / "akosha"
    folder.mkdir()
    running = start_akosha(folder, "sqlite")
    yield running
    stop_akosha(running)


async def _quick(seconds: float) -> None:
    """The pusher's sleep, cut short: its backoffs reach minutes, the test need not."""
    await asyncio.sleep(min(seconds, 0.1))


@contextlib.asynccontextmanager
async def pushing(db: Database, base_url: str, credential: str = TOKEN) -> AsyncIterator[Metrics]:
    """The pusher running against `base_url` for as long as the block runs; its metrics."""
    metrics = Metrics()
    retry = RequestRetryPolicy(max_attempts=1)
    breaker = BreakerPolicy(failure_threshold=3, cooldown_seconds=0.2)  # it opens, and soon probes
    async with ServiceClient("akosha", base_url, token=credential, retry=retry, breaker=breaker) as client:
        pusher = OutcomePusher(
            db, client, PushMetrics(metrics), source=SOURCE, poll_seconds=0.05, sleep=_quick
        )
        task = asyncio.create_task(pusher.run())
        try:
            yield metrics
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened")


async def _drained(db: Database) -> None:
    async def empty() -> bool:
        return (await outcome_outbox.backlog(db)).count == 0

    await _until(empty, "the outbox emptying")


def _this_hour() -> dict[str, Any]:
    until = datetime.now(UTC) + timedelta(hours=1)
    return {"window": "3h", "bucket": "hour", "until": until.isoformat()}


async def test_outcomes_reach_akosha_and_its_analytics(
    database: Database, tmp_path: Path, akosha: Akosha
) -> None:
    async with (
        harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h,
        pushing(database, akosha.server.base),
    ):
        workflow_id = await _run_flaky(h)
        await _drained(database)
    stored = await stored_outcomes(akosha, SOURCE)
    assert {repo: (status, attempts) for (wf, repo), (status, attempts, _) in stored.items()} == EXPECTED
    assert {wf for wf, _ in stored} == {workflow_id}

    reader = token("viewer", [SOURCE])
    trends = ok(
        await call(akosha, reader, "analyze_trends", metric="workflow_failures", by="repo", **_this_hour())
    )
    assert {s["key"]: s["total"] for s in trends["series"]} == {"gamma": 1, "alpha": 0, "beta": 0, "delta": 0}
    anomalies = ok(await call(akosha, reader, "detect_anomalies", metric="workflow_failures", **_this_hour()))
    assert [s["values"][-1] for s in anomalies["series"]] == [1]
    retries = ok(await call(akosha, reader, "analyze_trends", metric="workflow_retries", **_this_hour()))
    assert retries["series"][0]["total"] == 4, "each of the four repositories needed a second attempt"


async def test_with_akosha_down_nothing_is_lost(database: Database, tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "akosha"
    folder.mkdir()
    async with (
        harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h,
        pushing(database, f"http://127.0.0.1:{port}") as metrics,
    ):
        await _run_flaky(h)

        async def tried_again() -> bool:  # past the breaker's threshold: it also fails fast
            return _sample(metrics, "mahavishnu_akosha_push_failures_total") >= 5

        await _until(tried_again, "five failed sends")
        assert (await outcome_outbox.backlog(database)).count == 1
        server = spawn_akosha(folder, akosha_env(folder, AKOSHA_API_TOKEN=TOKEN), port=port)
        try:
            await asyncio.to_thread(wait_ready, server)
            await _drained(database)
            stored = await stored_outcomes(Akosha(server, folder, None), SOURCE)
        finally:
            assert server.stop() == 0
    assert {repo: (status, attempts) for (_, repo), (status, attempts, _) in stored.items()} == EXPECTED
    assert _sample(metrics, "mahavishnu_akosha_outcomes_pushed_total") == len(FLEET)


async def test_a_refused_batch_stays_queued(database: Database, tmp_path: Path, akosha: Akosha) -> None:
    async with (
        harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h,
        pushing(database, akosha.server.base, credential="not-the-token") as metrics,
    ):
        await _run_flaky(h)

        async def refused_twice() -> bool:
            return _sample(metrics, "mahavishnu_akosha_push_failures_total") >= 2

        await _until(refused_twice, "two refused sends")
        assert (await outcome_outbox.backlog(database)).count == 1
    assert await stored_outcomes(akosha, SOURCE) == {}


def test_mahavishnu_up_points_mahavishnu_at_the_akosha_it_starts() -> None:
    akosha = AkoshaSettings(port=9123)
    mahavishnu = MahavishnuSettings()
    assert _wired_env(mahavishnu, {"mahavishnu": mahavishnu, "akosha": akosha}) == {
        "MAHAVISHNU_AKOSHA_URL": akosha.resource_url
    }
    assert _wired_env(mahavishnu, {"mahavishnu": mahavishnu}) == {}
    elsewhere = MahavishnuSettings(akosha_url="http://akosha.internal:8682")
    assert _wired_env(elsewhere, {"mahavishnu": elsewhere, "akosha": akosha}) == {}


def test_mahavishnu_up_points_mahavishnu_at_the_session_buddy_it_starts() -> None:
    mahavishnu = MahavishnuSettings()
    open_buddy = SessionBuddySettings(port=9124)
    assert _wired_env(mahavishnu, {"mahavishnu": mahavishnu, "session-buddy": open_buddy}) == {
        "MAHAVISHNU_SESSION_BUDDY_URL": open_buddy.resource_url
    }
    guarded = SessionBuddySettings(port=9124, auth_secret=SECRET)
    wired = _wired_env(mahavishnu, {"mahavishnu": mahavishnu, "session-buddy": guarded})
    buddy_gate = TokenVerifier.from_settings(guarded)
    assert buddy_gate is not None
    principal = buddy_gate.verify(wired["MAHAVISHNU_SESSION_BUDDY_TOKEN"])
    assert (principal.subject, principal.role) == ("mahavishnu", "operator")
    own_gate = TokenVerifier.from_settings(MahavishnuSettings(auth_secret=SECRET))
    assert own_gate is not None
    with pytest.raises(AuthenticationError):  # signed for Session-Buddy: Mahavishnu's own gate refuses it
        own_gate.verify(wired["MAHAVISHNU_SESSION_BUDDY_TOKEN"])
    elsewhere = MahavishnuSettings(session_buddy_url="http://buddy.internal:8678")
    assert _wired_env(elsewhere, {"mahavishnu": elsewhere, "session-buddy": guarded}) == {}


def test_the_token_is_read_from_the_name_akosha_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AKOSHA_API_TOKEN", "shared-with-akosha")
    monkeypatch.setenv("MAHAVISHNU_AKOSHA_URL", "http://akosha:8682/")
    settings = MahavishnuSettings()
    assert settings.akosha_token is not None
    assert settings.akosha_token.get_secret_value() == "shared-with-akosha"
    assert settings.akosha_url == "http://akosha:8682"
    with pytest.raises(ValidationError, match="http"):
        MahavishnuSettings(akosha_url="ftp://akosha")
    production = MahavishnuSettings(env="production", akosha_url="http://akosha:8682", akosha_token=None)
    assert any("AKOSHA_API_TOKEN" in problem for problem in production.check_secure(listening=False))
