"""A workflow engine in the test process, on SQLite and on the real PostgreSQL, each test isolated."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import engine_config
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.engine import LocalEngine
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.orchestrator.workflows.views import WorkflowView
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.support.gitrepos import git_fleet

FAKE_AGENT = str(Path(__file__).resolve().parent.parent / "support" / "fake_agent.py")
DEFAULT_FLEET = {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"]}


@dataclass
class Harness:
    service: WorkflowService
    engine: LocalEngine
    db: Database
    metrics: Metrics
    settings: MahavishnuSettings
    root: Path

    def repo(self, name: str) -> Path:
        return self.root / "repos" / name

    async def wait(self, workflow_id: str, within: float = 30) -> WorkflowView:
        deadline = time.monotonic() + within
        while True:
            view = await self.service.status(LOCAL_PRINCIPAL, workflow_id)
            if view.finished_at is not None:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"workflow not final after {within} s: {view.counts}")
            await asyncio.sleep(0.05)

    async def wait_for(self, workflow_id: str, status: str, within: float = 15) -> WorkflowView:
        deadline = time.monotonic() + within
        while True:
            view = await self.service.status(LOCAL_PRINCIPAL, workflow_id)
            if view.counts.get(status):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"no run reached {status}: {view.counts}")
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
    **settings: Any,
) -> AsyncIterator[Harness]:
    """`engine_takes` limits the engine to those workflow ids (as the CLI's engine is limited)."""
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
    engine = LocalEngine(database, engine_config(config), definitions, WorkflowMetrics(metrics))
    service = WorkflowService(database, store, definitions, engine)
    async with engine.running(engine_takes):
        yield Harness(service, engine, database, metrics, config, root)
