"""The Temporal engine beyond the contract suite: build hosts with workers of their own, a worker
killed mid-batch, a host whose worker never comes, a workflow Temporal closed behind
Mahavishnu's back, and records that stay idempotent on (run, attempt).

Everything is real: the Temporal dev server, `mahavishnu worker` subprocesses, git repositories.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import build_engine, host_lookup
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.models import Attempt
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.orchestrator.workflows.temporal import TemporalEngine
from mahavishnu.orchestrator.workflows.temporal.engine import connect, temporal_id
from mahavishnu.orchestrator.workflows.temporal.wire import (
    ClaimRequest,
    Results,
    RunDone,
    result_of,
    unpack_runs,
)
from mahavishnu.orchestrator.workflows.views import WorkflowView
from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.support.gitrepos import make_git_repo
from tests.support.server import base_env, free_port, start_server
from tests.support.temporal import TemporalServer, temporal_server
from tests.workflows.conftest import wait_final

ADMIN = Principal(subject="admin", role="admin")
REPORT_PID = "import os, sys, time; time.sleep(float(sys.argv[1])); print('worker', os.getppid())"


def fleet(root: Path, hosts: dict[str, str | None]) -> Path:
    """Git repositories named by `hosts`, each on its build host (None: the shared queue)."""
    entries: list[dict[str, Any]] = []
    for name, host in hosts.items():
        entry: dict[str, Any] = {
            "name": name,
            "path": str(make_git_repo(root / "repos" / name)),
            "tags": ["t"],
        }
        if host is not None:
            entry["host"] = host
        entries.append(entry)
    manifest = root / "repos.yaml"
    manifest.write_text(yaml.safe_dump({"repos": entries}))
    return manifest


@dataclasses.dataclass
class Setup:
    service: WorkflowService
    engine: TemporalEngine
    settings: MahavishnuSettings
    db: Database
    config_file: Path
    env: dict[str, str]

    async def wait(self, workflow_id: str, within: float = 60) -> WorkflowView:
        return await wait_final(self.service, workflow_id, within)


def settings_for(root: Path, server: TemporalServer, manifest: Path, **extra: Any) -> dict[str, Any]:
    return {
        "repos_file": str(manifest),
        "allowed_roots": [str(root)],
        "data_dir": str(root / "var"),
        "engine": "temporal",
        "temporal_address": server.address,
        "temporal_task_queue_prefix": f"t{uuid.uuid4().hex[:12]}",
        "temporal_heartbeat_seconds": 2.0,
        "temporal_reconcile_seconds": 1.0,
        "kill_grace_seconds": 1.0,
        "workflows": {
            "report": {
                "argv": [sys.executable, "-c", REPORT_PID, "{seconds}"],
                "params": {"seconds": {"pattern": r"^[0-9.]+$"}},
                "timeout_seconds": 60,
            }
        },
        **extra,
    }


@contextlib.asynccontextmanager
async def replica(
    database: Database, root: Path, values: dict[str, Any], *, run: bool = True
) -> AsyncIterator[Setup]:
    """A Mahavishnu replica's workflow side (service and Temporal engine), its settings also
    written to a file a `mahavishnu worker` subprocess reads. `run=False`: the engine is not
    started (its activities are called by the test itself)."""
    config_file = root / f"settings-{uuid.uuid4().hex[:6]}.yaml"
    config_file.write_text(yaml.safe_dump(values))
    settings = MahavishnuSettings(**values)
    store = ManifestStore.from_settings(settings)
    store.reload_if_changed()
    engine = build_engine(database, settings, WorkflowMetrics(Metrics()), host_of=host_lookup(store))
    assert isinstance(engine, TemporalEngine)
    service = WorkflowService(database, store, settings.workflow_definitions(), engine)
    env = {**os.environ, "MAHAVISHNU_CONFIG": str(config_file), "MAHAVISHNU_LOG_FORMAT": "console"}
    env.pop("POSTGRES_URL", None)
    setup = Setup(service, engine, settings, database, config_file, env)
    if not run:
        yield setup
        return
    async with engine.running():
        yield setup


@contextlib.contextmanager
def worker(
    setup: Setup, log: Path, host: str | None = None, *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`mahavishnu worker` as a build host runs it (no database settings in its environment)."""
    argv = [sys.executable, "-m", "mahavishnu", "worker", *(["--host", host] if host else []), *options]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=setup.env, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while b"worker_started" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def reported_pid(output: str | None) -> int:
    line = next(line for line in (output or "").splitlines() if line.startswith("worker "))
    return int(line.split()[1])


@pytest.fixture
def server(temporal_dev_server: TemporalServer) -> TemporalServer:
    return temporal_dev_server


async def test_runs_go_to_their_hosts_worker(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    """Repositories with a host run on that host's worker; the others on the replica."""
    manifest = fleet(tmp_path, {"a1": "build1", "a2": "build1", "b1": None})
    values = settings_for(tmp_path, server, manifest)
    async with replica(database, tmp_path, values) as setup:
        port = free_port()
        with worker(setup, tmp_path / "build1.log", "build1", "--metrics-port", str(port)) as build1:
            summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "0"})
            view = await setup.wait(summary.workflow_id)
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    assert view.status == "succeeded", view.runs
    # The worker's own metrics: the two runs it executed.
    assert 'mahavishnu_repo_run_duration_seconds_count{workflow="report"} 2.0' in metrics
    ran_on = {run.repo: reported_pid(run.output_tail) for run in view.runs}
    assert ran_on["a1"] == ran_on["a2"] == build1.pid
    assert ran_on["b1"] == os.getpid()


async def test_a_host_without_a_worker_fails_its_runs_as_unavailable(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    manifest = fleet(tmp_path, {"lonely": "ghost", "here": None})
    values = settings_for(tmp_path, server, manifest, temporal_host_timeout_seconds=1.5)
    async with replica(database, tmp_path, values) as setup:
        started = time.monotonic()
        summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "0"})
        view = await setup.wait(summary.workflow_id, within=30)
        elapsed = time.monotonic() - started
    runs = {run.repo: run for run in view.runs}
    assert runs["here"].status == "succeeded"
    assert runs["lonely"].status == "failed"
    assert "host unavailable" in (runs["lonely"].error or "")
    assert "ghost" in (runs["lonely"].error or "")
    assert elapsed < 20, "it waited far past the host timeout"


async def test_a_worker_killed_mid_batch_loses_no_run(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    """kill -9 of one of two workers during 200 x `sleep 2`: none lost, none stuck; its attempts
    are recorded lost, and their runs finish on the other worker, the first retry within two
    heartbeat timeouts (the other worker has free slots: 32 each, 32 batches in flight)."""
    manifest = fleet(tmp_path, {f"r{i:03d}": "farm" for i in range(200)})
    values = settings_for(tmp_path, server, manifest, max_concurrent_runs=32)
    async with replica(database, tmp_path, values) as setup:
        with (
            worker(setup, tmp_path / "w1.log", host="farm") as first,
            worker(setup, tmp_path / "w2.log", host="farm") as second,
        ):
            summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "2"})
            await asyncio.sleep(3.0)  # each batch is inside its second run
            os.kill(first.pid, signal.SIGKILL)  # the worker alone: its reaper kills its groups
            killed_at = time.monotonic()
            first.wait()
            view = await setup.wait(summary.workflow_id, within=120)
            runs = await setup.service.status(LOCAL_PRINCIPAL, summary.workflow_id, limit=200)
        async with database.session() as session:
            attempts = (await session.scalars(select(Attempt))).all()
    assert view.status == "succeeded", view.counts
    assert view.counts == {"succeeded": 200}
    lost = {a.run_id for a in attempts if a.status == "lost"}
    assert lost, "the attempts the killed worker was running are recorded as lost"
    for run in runs.runs:
        if run.run_id in lost:
            assert run.attempt == 2, "a lost attempt is followed by exactly one more"
            assert reported_pid(run.output_tail) == second.pid
    retries = [a for a in attempts if a.run_id in lost and a.attempt == 2]
    assert {a.run_id for a in retries} == lost
    kill_wall = time.time() - (time.monotonic() - killed_at)
    first_retry = min(_aware(a.started_at).timestamp() for a in retries)
    assert first_retry - kill_wall < 2 * values["temporal_heartbeat_seconds"] + 1


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def test_a_workflow_terminated_in_temporal_is_restarted_by_the_reconciler(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    manifest = fleet(tmp_path, {"x": None, "y": None})
    values = settings_for(tmp_path, server, manifest)
    async with replica(database, tmp_path, values) as setup:
        summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "3"})
        client = await Client.connect(server.address)
        await asyncio.sleep(1.0)
        await client.get_workflow_handle(temporal_id(summary.workflow_id)).terminate("behind its back")
        view = await setup.wait(summary.workflow_id, within=60)
        async with database.session() as session:
            lost = (await session.scalars(select(Attempt).where(Attempt.status == "lost"))).all()
    assert view.status == "succeeded", view.counts
    assert {run.attempt for run in view.runs} <= {1, 2}
    assert all(a.attempt == 1 for a in lost)


async def test_the_reconciler_reaches_every_open_workflow_however_many_stay_open(
    database: Database, tmp_path: Path, server: TemporalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round checks the open workflows after the previous round's last one, then wraps
    around: starts lost behind a round's worth of running workflows are still made."""
    monkeypatch.setattr("mahavishnu.orchestrator.workflows.temporal.engine.RECONCILE_BATCH", 2)
    values = settings_for(tmp_path, server, fleet(tmp_path, {"x": None}))
    async with replica(database, tmp_path, values, run=False) as setup:
        # Temporal unreachable for the engine at the time: each start fails, the rows wait.
        ids = [
            (await setup.service.trigger(ADMIN, "report", params={"seconds": "0"})).workflow_id
            for _ in range(5)
        ]
        await asyncio.sleep(0.2)
        client = await connect(setup.engine._config)
        setup.engine._client = client
        try:
            assert [await setup.engine.heal() for _ in range(4)] == [2, 2, 1, 0]
            for workflow_id in ids:
                described = await client.get_workflow_handle(temporal_id(workflow_id)).describe()
                assert described.status is WorkflowExecutionStatus.RUNNING
        finally:
            for workflow_id in ids:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(temporal_id(workflow_id)).terminate("test over")


async def test_a_batch_recorded_twice_is_recorded_once(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    """Temporal delivers an activity at least once: recording the same batch again (or an old
    attempt after the run moved on) writes nothing."""
    manifest = fleet(tmp_path, {"solo": None})
    values = settings_for(tmp_path, server, manifest)
    async with replica(database, tmp_path, values, run=False) as setup:
        summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "0"})
        control = setup.engine._control
        plan = await control.claim(ClaimRequest(summary.workflow_id, in_flight=0))
        [batch] = plan.batches
        [run] = unpack_runs(batch.runs)
        done = RunDone(run, 0, False, False, 0.1, "worker 1\n", 9, None, False, time.time(), "")
        await control.record(Results([result_of([done])]))
        await control.record(Results([result_of([done])]))
        view = await setup.wait(summary.workflow_id, within=10)
        async with database.session() as session:
            attempts = (await session.scalars(select(Attempt))).all()
    assert view.status == "succeeded"
    assert [(a.run_id, a.attempt, a.status) for a in attempts] == [(run.run_id, 1, "succeeded")]


def test_a_manifest_host_must_be_a_plain_name(tmp_path: Path) -> None:
    manifest = fleet(tmp_path, {"ok": "build-1"})
    text = manifest.read_text().replace("build-1", "'../etc'")
    manifest.write_text(text)
    store = ManifestStore(manifest, allowed_roots=[tmp_path], roles=["tool"])
    store.reload_if_changed()
    assert store.problems, "a host with a slash is refused"
    assert any("host" in problem.message for problem in store.problems)


async def test_the_temporal_server_killed_and_restarted_loses_no_run(
    database: Database, tmp_path: Path
) -> None:
    """kill -9 of a file-backed dev server mid-workflow, started again on the same store: every
    run finishes, and the database agrees with Temporal once the workflow closes."""
    with temporal_server(tmp_path / "temporal", file_backed=True) as own:
        manifest = fleet(tmp_path, {f"k{i}": None for i in range(6)})
        values = settings_for(tmp_path, own, manifest, max_concurrent_runs=3)
        async with replica(database, tmp_path, values) as setup:
            summary = await setup.service.trigger(ADMIN, "report", params={"seconds": "1.5"})
            await asyncio.sleep(1.0)
            own.kill()
            await asyncio.sleep(1.0)
            own.start()
            view = await setup.wait(summary.workflow_id, within=120)
            client = await Client.connect(own.address)
            handle = client.get_workflow_handle(temporal_id(summary.workflow_id))
            async with asyncio.timeout(30):  # it closes just after the record that closed the rows
                final = await handle.result()
            described = await handle.describe()
    assert view.status == "succeeded", view.counts
    assert len(view.runs) == 6
    assert final == "succeeded"
    assert described.status == WorkflowExecutionStatus.COMPLETED


async def test_a_5000_repository_workflow_stays_within_temporals_history_limits(
    database: Database, tmp_path: Path, server: TemporalServer
) -> None:
    """Batches keep one workflow's history small: 5,000 runs, well under 10,000 events (Temporal
    warns past 10,240 and a continue-as-new would split it)."""
    template = make_git_repo(tmp_path / "template")
    entries = []
    for i in range(5000):
        path = tmp_path / "repos" / f"m{i:04d}"
        shutil.copytree(template, path, symlinks=True)
        entries.append({"name": path.name, "path": str(path), "tags": ["t"]})
    manifest = tmp_path / "repos.yaml"
    manifest.write_text(yaml.safe_dump({"repos": entries}))
    values = settings_for(tmp_path, server, manifest, max_concurrent_runs=8)
    values["workflows"]["nothing"] = {"argv": ["true"]}
    async with replica(database, tmp_path, values) as setup:
        summary = await setup.service.trigger(ADMIN, "nothing")
        view = await setup.wait(summary.workflow_id, within=240)
        client = await Client.connect(server.address)
        events = [
            e
            async for e in client.get_workflow_handle(temporal_id(summary.workflow_id)).fetch_history_events()
        ]
    assert view.status == "succeeded"
    assert view.counts == {"succeeded": 5000}
    assert len(events) < 10_000


def test_a_server_whose_temporal_is_unreachable_keeps_serving_and_retries(tmp_path: Path) -> None:
    """Temporal down at start-up is an outage to wait out, not a crash: the server answers, its
    log says why workflows do not run, and it keeps trying."""
    manifest = fleet(tmp_path, {"solo": None})
    env = base_env(
        tmp_path,
        manifest,
        {
            "MAHAVISHNU_ENGINE": "temporal",
            "MAHAVISHNU_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "MAHAVISHNU_DATA_DIR": str(tmp_path / "var"),
        },
    )
    server = start_server(tmp_path, env)
    try:
        deadline = time.monotonic() + 20
        while sum("engine_unavailable" in line for line in server.log_lines()) < 2:
            assert time.monotonic() < deadline, server.log_path.read_text()[-2000:]
            time.sleep(0.2)
        assert server.process.poll() is None
        health = httpx.get(f"{server.base}/health", timeout=10)
        assert health.status_code == 200
        engine = health.json()["checks"]["engine"]
        assert engine["status"] == "degraded"
        assert "Temporal is unreachable" in engine["detail"]
    finally:
        server.stop()
