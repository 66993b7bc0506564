"""The workflow engine with real subprocesses in real git repositories, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.workflows.models import Attempt
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from tests.workflows.conftest import agent_workflow, harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: these hold for every engine (see `conftest.ENGINES`)."""


def calls(repo: Path) -> list[dict[str, object]]:
    path = repo / ".fake-agent-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited, which is what matters.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def test_git_status_succeeds_in_every_selected_repo(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        summary = await h.service.trigger(ADMIN, "git-status", tag="python")
        assert summary.status == "queued"
        view = await h.wait(summary.workflow_id)
    assert view.status == "succeeded"
    assert sorted(r.repo for r in view.runs) == ["alpha", "beta"]
    for run in view.runs:
        assert run.exit_code == 0
        assert run.attempt == 1
        assert "## main" in (run.output_tail or "")
        assert run.duration_seconds is not None
        assert run.duration_seconds > 0
    assert view.counts == {"succeeded": 2}


async def test_agent_gets_the_prompt_as_one_argument(database: Database, tmp_path: Path) -> None:
    prompt = "update the changelog; rm -rf / $(touch pwned) `id` --upload-pack=evil\nsecond line"
    async with harness(database, tmp_path) as h:
        view = await h.wait(
            (await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": prompt})).workflow_id
        )
        recorded = calls(h.repo("alpha"))
    assert view.status == "succeeded"
    assert recorded[0]["argv"] == ["-p", prompt]
    assert recorded[0]["cwd"] == str(h.repo("alpha"))
    assert not (h.repo("alpha") / "pwned").exists()
    assert (h.repo("alpha") / "README.md").exists()


async def test_failure_partial_and_exit_codes(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        view = await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", tag="python", params={"prompt": "fail-in:beta"})
            ).workflow_id
        )
    assert view.status == "partial"
    by_repo = {r.repo: r for r in view.runs}
    assert by_repo["alpha"].status == "succeeded"
    assert by_repo["beta"].status == "failed"
    assert by_repo["beta"].exit_code == 2
    assert by_repo["beta"].error == "exited with code 2"
    assert "failing on request" in (by_repo["beta"].output_tail or "")


async def test_timeout_kills_the_whole_process_group(database: Database, tmp_path: Path) -> None:
    workflows = {"slow": agent_workflow(timeout_seconds=1.0, retry={"max_attempts": 1})}
    async with harness(database, tmp_path, workflows=workflows) as h:
        started = time.monotonic()
        summary = await h.service.trigger(
            ADMIN, "slow", repos=["alpha"], params={"prompt": "spawn-child sleep:60"}
        )
        view = await h.wait(summary.workflow_id)
        elapsed = time.monotonic() - started
        leader = int((h.repo("alpha") / ".fake-agent.pid").read_text())
        child = int((h.repo("alpha") / ".fake-agent-child.pid").read_text())
    assert view.status == "failed"
    assert view.runs[0].status == "timed_out"
    assert "timed out after 1 s" in (view.runs[0].error or "")
    assert elapsed < 10
    await asyncio.sleep(0.2)
    assert not pid_alive(leader)
    assert not pid_alive(child), "the grandchild survived the timeout"


async def test_cancel_stops_running_and_queued_runs(database: Database, tmp_path: Path) -> None:
    workflows = {"slow": agent_workflow(timeout_seconds=120)}
    async with harness(database, tmp_path, workflows=workflows, max_concurrent_runs=1) as h:
        summary = await h.service.trigger(ADMIN, "slow", params={"prompt": "spawn-child sleep:60"})
        await h.wait_for(summary.workflow_id, "running")
        started = time.monotonic()
        await h.service.cancel(ADMIN, summary.workflow_id)
        view = await h.wait(summary.workflow_id, within=10)
        elapsed = time.monotonic() - started
        running_repo = next(r.repo for r in view.runs if r.attempt == 1)
        child = int((h.repo(running_repo) / ".fake-agent-child.pid").read_text())
    assert view.status == "cancelled"
    assert elapsed < 5
    assert {r.status for r in view.runs} == {"cancelled"}
    never_started = [r for r in view.runs if r.attempt == 0]
    assert len(never_started) == 2
    assert all(r.error == "cancelled before it started" for r in never_started)
    await asyncio.sleep(0.2)
    assert not pid_alive(child)


async def test_output_over_the_cap_is_bounded(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, output_tail_bytes=1000, log_max_bytes=5000) as h:
        summary = await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "bytes:200000"})
        view = await h.wait(summary.workflow_id)
        logs = list((tmp_path / "var" / "logs" / summary.workflow_id).glob("*.log"))
    run = view.runs[0]
    assert run.status == "succeeded"
    assert len((run.output_tail or "").encode()) <= 1000
    assert (run.output_tail or "").endswith("x" * 100)
    assert len(logs) == 1
    text = logs[0].read_bytes()
    assert len(text) <= 5000 + 100
    assert text.endswith(b"[log truncated: cap reached]\n")


async def test_retry_then_success_records_every_attempt(database: Database, tmp_path: Path) -> None:
    workflows = {
        "flaky": agent_workflow(
            retry={"max_attempts": 3, "initial_backoff_seconds": 0.05, "jitter_seconds": 0.01}
        )
    }
    async with harness(database, tmp_path, workflows=workflows) as h:
        summary = await h.service.trigger(ADMIN, "flaky", repos=["alpha"], params={"prompt": "fail-until:3"})
        view = await h.wait(summary.workflow_id)
        async with database.session() as session:
            attempts = (
                await session.scalars(
                    select(Attempt).where(Attempt.run_id == view.runs[0].run_id).order_by(Attempt.attempt)
                )
            ).all()
        dead = await h.service.dead_letters(ADMIN)
    assert view.status == "succeeded"
    assert view.runs[0].attempt == 3
    assert [(a.attempt, a.status, a.exit_code) for a in attempts] == [
        (1, "failed", 1),
        (2, "failed", 1),
        (3, "succeeded", 0),
    ]
    assert dead.dead_letters == []


async def test_non_retryable_exit_code_is_not_retried(database: Database, tmp_path: Path) -> None:
    workflows = {
        "picky": agent_workflow(
            retry={"max_attempts": 3, "retry_on_exit_codes": [75], "initial_backoff_seconds": 0}
        )
    }
    async with harness(database, tmp_path, workflows=workflows) as h:
        view = await h.wait(
            (
                await h.service.trigger(ADMIN, "picky", repos=["alpha"], params={"prompt": "exit:3"})
            ).workflow_id
        )
    assert view.runs[0].attempt == 1
    assert view.runs[0].status == "failed"


async def test_exhausted_retries_go_to_the_dlq_and_back_out(database: Database, tmp_path: Path) -> None:
    workflows = {
        "flaky": agent_workflow(
            retry={"max_attempts": 2, "initial_backoff_seconds": 0.05, "jitter_seconds": 0}
        )
    }
    async with harness(database, tmp_path, workflows=workflows) as h:
        summary = await h.service.trigger(ADMIN, "flaky", repos=["alpha"], params={"prompt": "fail-until:5"})
        view = await h.wait(summary.workflow_id)
        assert view.status == "failed"
        [entry] = (await h.service.dead_letters(ADMIN)).dead_letters
        assert entry.status == "open"
        assert entry.attempts == 2
        assert entry.inputs["argv"][-1] == "fail-until:5"
        assert entry.last_error == "exited with code 1"

        # Retry 1: the 3rd call still fails, so the entry goes back to open. The retry reopens
        # the workflow: a waiter now waits for its next close.
        waiter = asyncio.create_task(h.service.until_closed(summary.workflow_id))
        await h.service.retry_dead_letter(ADMIN, entry.dead_letter_id)
        await asyncio.wait_for(waiter, 30)
        view = await h.service.status(ADMIN, summary.workflow_id)
        assert view.finished_at is not None
        again = await h.service.dead_letter(ADMIN, entry.dead_letter_id)
        assert (view.status, again.status, again.retries, again.attempts) == ("failed", "open", 1, 3)

        # Retries 2 and 3: the 5th call succeeds, and the entry leaves the queue.
        await h.service.retry_dead_letter(ADMIN, entry.dead_letter_id)
        await h.wait(summary.workflow_id)
        await h.service.retry_dead_letter(ADMIN, entry.dead_letter_id)
        view = await h.wait(summary.workflow_id)
        resolved = await h.service.dead_letter(ADMIN, entry.dead_letter_id)
        assert view.status == "succeeded"
        assert view.runs[0].attempt == 5
        assert resolved.status == "resolved"
        assert (await h.service.dead_letters(ADMIN)).dead_letters == []
        assert await h.service.purge_dead_letters(ADMIN) == 1


async def test_circuit_opens_skips_and_recovers_after_cooldown(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, circuit_failure_threshold=2, circuit_cooldown_seconds=1.5) as h:
        for _ in range(2):
            await h.wait(
                (
                    await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "exit:1"})
                ).workflow_id
            )
        skipped = await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", repos=["alpha", "beta"], params={"prompt": "ok"})
            ).workflow_id
        )
        by_repo = {r.repo: r for r in skipped.runs}
        assert by_repo["alpha"].status == "skipped_circuit_open"
        assert "circuit open for alpha" in (by_repo["alpha"].error or "")
        assert by_repo["beta"].status == "succeeded"
        assert len(calls(h.repo("alpha"))) == 2  # the skipped run never started
        await h.maintain()
        assert h.metrics.registry.get_sample_value("mahavishnu_circuit_open_repos") == 1

        await asyncio.sleep(1.6)
        probe = await h.wait(
            (await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "ok"})).workflow_id
        )
        assert probe.runs[0].status == "succeeded"
        after = await h.wait(
            (await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "ok"})).workflow_id
        )
        assert after.runs[0].status == "succeeded"
        await h.maintain()
        assert h.metrics.registry.get_sample_value("mahavishnu_circuit_open_repos") == 0


async def test_half_open_probe_failure_reopens(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, circuit_failure_threshold=1, circuit_cooldown_seconds=0.5) as h:
        await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "exit:1"})
            ).workflow_id
        )
        await asyncio.sleep(0.6)
        probe = await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "exit:1"})
            ).workflow_id
        )
        assert probe.runs[0].status == "failed"
        blocked = await h.wait(
            (await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "ok"})).workflow_id
        )
        assert blocked.runs[0].status == "skipped_circuit_open"


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def spans(repos: list[Path]) -> list[tuple[float, float]]:
    found = []
    for repo in repos:
        for line in (repo / ".fake-agent-spans.jsonl").read_text().splitlines():
            span = json.loads(line)
            found.append((span["start"], span["end"]))
    return found


async def test_per_workflow_concurrency_limit(database: Database, tmp_path: Path) -> None:
    fleet = {f"r{i}": ["python"] for i in range(6)}
    workflows = {"capped": agent_workflow(max_concurrency=2)}
    async with harness(database, tmp_path, fleet=fleet, workflows=workflows, max_concurrent_runs=5) as h:
        await h.wait((await h.service.trigger(ADMIN, "capped", params={"prompt": "sleep:0.4"})).workflow_id)
        ran = spans([h.repo(name) for name in fleet])
    assert len(ran) == 6
    assert max_overlap(ran) == 2


async def test_global_concurrency_limit(database: Database, tmp_path: Path) -> None:
    fleet = {f"r{i}": ["python"] for i in range(6)}
    async with harness(database, tmp_path, fleet=fleet, max_concurrent_runs=3) as h:
        first = await h.service.trigger(ADMIN, "agent", params={"prompt": "sleep:0.4"})
        second = await h.service.trigger(ADMIN, "agent", params={"prompt": "sleep:0.4"})
        await h.wait(first.workflow_id)
        await h.wait(second.workflow_id)
        ran = spans([h.repo(name) for name in fleet])
    assert len(ran) == 12
    assert max_overlap(ran) == 3


async def test_environment_is_an_allowlist(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_NOT_FOR_CHILDREN", "x")
    monkeypatch.setenv("ALLOWED_FOR_CHILDREN", "y")
    workflows = {"envcheck": agent_workflow(env_allowlist=["ALLOWED_FOR_CHILDREN"])}
    async with harness(database, tmp_path, workflows=workflows) as h:
        await h.wait(
            (await h.service.trigger(ADMIN, "envcheck", repos=["alpha"], params={"prompt": "hi"})).workflow_id
        )
        names = calls(h.repo("alpha"))[0]["env"]
    assert "ALLOWED_FOR_CHILDREN" in names  # type: ignore[operator]
    assert "SECRET_NOT_FOR_CHILDREN" not in names  # type: ignore[operator]
    assert "PATH" in names  # type: ignore[operator]


async def test_missing_program_fails_cleanly(database: Database, tmp_path: Path) -> None:
    workflows = {"ghost": {"argv": ["/nonexistent/tool", "--version"]}}
    async with harness(database, tmp_path, workflows=workflows) as h:
        view = await h.wait((await h.service.trigger(ADMIN, "ghost", repos=["alpha"])).workflow_id)
    assert view.runs[0].status == "failed"
    assert "could not start" in (view.runs[0].error or "")
    assert view.runs[0].exit_code is None


async def test_metrics_follow_the_runs(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", tag="python", params={"prompt": "fail-in:beta"})
            ).workflow_id
        )
        sample = h.metrics.registry.get_sample_value
        assert sample("mahavishnu_workflows_total", {"workflow": "agent", "status": "partial"}) == 1
        assert sample("mahavishnu_repo_runs_total", {"workflow": "agent", "status": "succeeded"}) == 1
        assert sample("mahavishnu_repo_runs_total", {"workflow": "agent", "status": "failed"}) == 1
        assert sample("mahavishnu_repo_run_duration_seconds_count", {"workflow": "agent"}) == 2
        await h.maintain()
        assert sample("mahavishnu_dead_letters") == 1
        assert sample("mahavishnu_queue_depth") == 0
        assert sample("mahavishnu_active_runs") == 0


async def test_active_runs_counts_the_runs_executing_now(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        sample = h.metrics.registry.get_sample_value
        summary = await h.service.trigger(ADMIN, "agent", tag="python", params={"prompt": "sleep:1.5"})
        deadline = time.monotonic() + 10
        while sample("mahavishnu_active_runs") != 2:
            assert time.monotonic() < deadline, f"active_runs stayed {sample('mahavishnu_active_runs')}"
            await asyncio.sleep(0.02)
        await h.wait(summary.workflow_id)
        assert sample("mahavishnu_active_runs") == 0


async def test_waiters_wake_when_the_engine_closes_the_workflow(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        summary = await h.service.trigger(ADMIN, "agent", tag="python", params={"prompt": "sleep:0.3"})
        early = asyncio.create_task(h.service.until_closed(summary.workflow_id))
        await asyncio.sleep(0.1)
        assert not early.done()  # runs are still going
        await asyncio.wait_for(early, 30)
        # The notice comes after the close is committed: the status is final already.
        view = await h.service.status(ADMIN, summary.workflow_id)
        assert view.status == "succeeded"
        assert view.finished_at is not None


async def test_without_a_local_engine_waiting_only_times_out(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        summary = await h.service.trigger(ADMIN, "git-status", repos=["alpha"])
        await h.wait(summary.workflow_id)
        manifest = ManifestStore.from_settings(h.settings)
        manifest.reload_if_changed()
        detached = WorkflowService(database, manifest, h.settings.workflow_definitions(), engine=None)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(detached.until_closed(summary.workflow_id), 0.2)


async def test_a_fleet_larger_than_the_local_queue_runs_each_repo_once(
    database: Database, tmp_path: Path
) -> None:
    """Claims come in batches (a small first one from idle, then up to the prefetch); every run
    is taken once, attempted once and recorded once."""
    fleet = {f"r{i:02d}": ["bulk"] for i in range(90)}  # more than 2 workers x prefetch 32
    workflows = {"noop": {"argv": ["true"]}}
    async with harness(database, tmp_path, fleet=fleet, workflows=workflows, max_concurrent_runs=2) as h:
        first = await h.service.trigger(ADMIN, "noop", tag="bulk")
        second = await h.service.trigger(ADMIN, "noop", tag="bulk")
        views = [await h.wait(w.workflow_id, within=60) for w in (first, second)]
        async with database.session() as session:
            attempts = (await session.scalars(select(Attempt.run_id))).all()
    for view in views:
        assert view.status == "succeeded"
        assert len(view.runs) == 90
        assert {run.attempt for run in view.runs} == {1}
    assert len(attempts) == 180
    assert len(set(attempts)) == 180


async def test_a_cancel_that_closes_the_workflow_itself_is_counted_and_wakes_waiters(
    database: Database, tmp_path: Path
) -> None:
    """With no run started, the cancel closes the workflow in the service, not in the engine's
    cycle; the close is still counted and its waiters still wake."""
    async with harness(database, tmp_path, engine_takes=[]) as h:  # this engine claims nothing
        summary = await h.service.trigger(ADMIN, "git-status", tag="python")
        waiter = asyncio.create_task(h.service.until_closed(summary.workflow_id))
        view = await h.service.cancel(ADMIN, summary.workflow_id)
        await asyncio.wait_for(waiter, 5)
        sample = h.metrics.registry.get_sample_value
        assert sample("mahavishnu_workflows_total", {"workflow": "git-status", "status": "cancelled"}) == 1
    assert view.status == "cancelled"
    assert view.counts == {"cancelled": 2}


async def test_a_workflow_held_back_by_its_own_limit_does_not_starve_others(
    database: Database, tmp_path: Path
) -> None:
    """A workflow limited to one run at a time, with more runs than the engine holds, must not
    fill the local queue so that a later workflow waits for all of it."""
    fleet = {f"b{i:02d}": ["bulk"] for i in range(80)} | {"alpha": ["python"], "beta": ["python"]}
    workflows = {"serial": {"argv": ["sleep", "0.05"], "max_concurrency": 1}}
    async with harness(database, tmp_path, fleet=fleet, workflows=workflows, max_concurrent_runs=2) as h:
        serial = await h.service.trigger(ADMIN, "serial", tag="bulk")  # about 80 x 0.05 s, one by one
        await h.wait_for(serial.workflow_id, "succeeded")
        quick = await h.service.trigger(ADMIN, "git-status", tag="python")
        done = await h.wait(quick.workflow_id, within=30)
        still = await h.service.status(ADMIN, serial.workflow_id)
        await h.wait(serial.workflow_id, within=60)
    assert done.status == "succeeded"
    # The quick one was claimed at once, next to the serial one; it did not queue behind the
    # serial runs already held here (each takes at least 50 ms, one at a time).
    assert still.counts.get("succeeded", 0) < 25
