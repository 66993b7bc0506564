"""A workflow engine in the test process, on SQLite and on the real PostgreSQL, each test isolated.

The harness is a contract suite: a module whose tests hold for any engine says
`pytestmark = pytest.mark.usefixtures("engine_kind")`, and its tests then run once per engine in
`ENGINES` (the local one, and Temporal on a real dev server). A test that relies on one engine's
own mechanics (the local queue's claims, its instance rows) names that engine:
`harness(..., engine="local")`; a test outside the contract gets the local engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import engine_config, temporal_config
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.local import LocalEngine
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.ports import WorkflowEngine
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.orchestrator.workflows.temporal import TemporalEngine
from mahavishnu.orchestrator.workflows.views import WorkflowView
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.conftest import PG_URL, require_service
from tests.support.cli_fixtures import DatabaseTarget
from tests.support.gitrepos import git_fleet
from tests.support.temporal import TemporalServer, temporal_server

FAKE_AGENT = str(Path(__file__).resolve().parent.parent / "support" / "fake_agent.py")
DEFAULT_FLEET = {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"]}


@dataclass(frozen=True)
class EngineUnderTest:
    """An engine built for the contract suite, with the hooks the tests need beyond the seam."""

    engine: WorkflowEngine
    maintain: Callable[[], Awaitable[None]]
    """One round of the engine's housekeeping now (relayed cancels, gauges, the sweep that closes
    workflows every other check missed), so a test need not wait for its schedule."""


EngineFactory = Callable[
    [Database, MahavishnuSettings, Mapping[str, WorkflowDefinition], WorkflowMetrics], EngineUnderTest
]


def _local_engine(
    db: Database,
    settings: MahavishnuSettings,
    definitions: Mapping[str, WorkflowDefinition],
    metrics: WorkflowMetrics,
) -> EngineUnderTest:
    engine = LocalEngine(db, engine_config(settings), definitions, metrics)
    return EngineUnderTest(engine, engine._maintain)


def _temporal_engine(
    db: Database,
    settings: MahavishnuSettings,
    definitions: Mapping[str, WorkflowDefinition],
    metrics: WorkflowMetrics,
) -> EngineUnderTest:
    """The Temporal engine on the session's dev server, on task queues of its own (each test's
    workflows never meet another's), its replica serving the shared runs queue."""
    assert _temporal_address, "the temporal_dev_server fixture sets it"
    config = dataclasses.replace(
        temporal_config(settings),
        address=_temporal_address[-1],
        task_queue_prefix=f"t{uuid.uuid4().hex[:12]}",
        heartbeat_seconds=2.0,
        reconcile_seconds=1.0,
    )
    engine = TemporalEngine(db, config, engine_config(settings), definitions, metrics)
    return EngineUnderTest(engine, engine._maintain)


ENGINES: dict[str, EngineFactory] = {"local": _local_engine, "temporal": _temporal_engine}
"""Every engine the contract suite runs against; a new engine adds its factory here."""

_temporal_address: list[str] = []


@pytest.fixture(scope="session")
def temporal_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """One in-memory Temporal dev server for the session (tests isolate by task queue)."""
    with temporal_server(tmp_path_factory.mktemp("temporal")) as server:
        _temporal_address.append(server.address)
        try:
            yield server
        finally:
            _temporal_address.remove(server.address)


_engine_kinds: list[str] = []
"""The engine the current contract test runs against (set by the `engine_kind` fixture)."""


@pytest.fixture(params=sorted(ENGINES))
def engine_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the requesting test once per engine; `harness()` builds that engine."""
    kind = str(request.param)
    if kind == "temporal":
        request.getfixturevalue("temporal_dev_server")
    _engine_kinds.append(kind)
    try:
        yield kind
    finally:
        _engine_kinds.pop()


@dataclass
class Harness:
    service: WorkflowService
    engine: WorkflowEngine
    maintain: Callable[[], Awaitable[None]]
    db: Database
    metrics: Metrics
    settings: MahavishnuSettings
    root: Path

    def repo(self, name: str) -> Path:
        return self.root / "repos" / name

    async def wait(self, workflow_id: str, within: float = 30) -> WorkflowView:
        return await wait_final(self.service, workflow_id, within)

    async def wait_for(self, workflow_id: str, status: str, within: float = 15) -> WorkflowView:
        deadline = time.monotonic() + within
        while True:
            view = await self.service.status(LOCAL_PRINCIPAL, workflow_id)
            if view.counts.get(status):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"no run reached {status}: {view.counts}")
            await asyncio.sleep(0.05)


async def wait_final(service: WorkflowService, workflow_id: str, within: float) -> WorkflowView:
    """The workflow once it is final (every run), or an AssertionError with its counts."""
    deadline = time.monotonic() + within
    while True:
        view = await service.status(LOCAL_PRINCIPAL, workflow_id)
        if view.finished_at is not None:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow not final after {within} s: {view.counts}")
        await asyncio.sleep(0.05)


def agent_workflow(**overrides: Any) -> dict[str, Any]:
    """A workflow running the fake agent with a prompt (like the built-in `agent`)."""
    base: dict[str, Any] = {
        "argv": [sys.executable, FAKE_AGENT, "-p", "{prompt}"],
        "params": {"prompt": {"max_length": 20000}},
        "timeout_seconds": 20,
    }
    base.update(overrides)
    return base


@contextlib.asynccontextmanager
async def harness(
    database: Database,
    root: Path,
    *,
    fleet: dict[str, list[str]] | None = None,
    workflows: dict[str, Any] | None = None,
    engine_takes: Collection[str] | None = None,
    engine: str | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """`engine_takes` limits the engine to those workflow ids (as the CLI's engine is limited).
    `engine` names the engine; by default, the one the contract test runs against, or the local
    engine for a test outside the contract (tests/backup builds its data with this harness)."""
    kind = engine or (_engine_kinds[-1] if _engine_kinds else "local")
    manifest = git_fleet(root, fleet or DEFAULT_FLEET)
    config = MahavishnuSettings(
        repos_file=manifest,
        allowed_roots=[root],
        data_dir=root / "var",
        workflows=workflows or {},
        agent_command=[sys.executable, FAKE_AGENT, "-p"],
        engine_poll_seconds=0.05,
        kill_grace_seconds=1.0,
        **settings,
    )
    store = ManifestStore.from_settings(config)
    store.reload_if_changed()
    metrics = Metrics()
    definitions = config.workflow_definitions()
    built = ENGINES[kind](database, config, definitions, WorkflowMetrics(metrics))
    service = WorkflowService(database, store, definitions, built.engine)
    async with built.engine.running(engine_takes):
        yield Harness(service, built.engine, built.maintain, database, metrics, config, root)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseTarget]:
    """Where the CLI tests' `mahavishnu` keeps its workflows: SQLite in the data folder, or a
    PostgreSQL schema of its own (dropped after the test)."""
    if request.param == "sqlite":
        yield DatabaseTarget("sqlite", {}, sqlite_file=tmp_path / "var" / "mahavishnu.db")
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"cli_{uuid.uuid4().hex[:16]}"
    target = DatabaseTarget(
        "postgresql", {"POSTGRES_URL": PG_URL, "MAHAVISHNU_DATABASE_SCHEMA": schema}, schema=schema
    )
    try:
        yield target
    finally:
        target.drop()
