"""The real Mahavishnu server pushing to the real Akosha server: a workflow over four
repositories triggered over MCP, one failing in every attempt, becomes five outcomes in Akosha
under Mahavishnu's source name, and a failure in `detect_anomalies` over `workflow_failures`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.akosha.outcomes import Stored, stored_outcomes
from tests.akosha.test_tools_http import call, ok
from tests.support.client import call_tool
from tests.support.server import RunningServer, start_server
from tests.workflows.test_over_mcp import FLEET, structured, wait_final, workflow_env

SOURCE = "mhv-e2e"


@pytest.fixture
def akosha(tmp_path: Path) -> Iterator[Akosha]:
    folder = tmp_path / "akosha"
    folder.mkdir()
    running = start_akosha(folder, "sqlite")
    yield running
    stop_akosha(running)


@pytest.fixture
def mahavishnu(tmp_path: Path, akosha: Akosha) -> Iterator[RunningServer]:
    root = tmp_path / "mahavishnu"
    root.mkdir()
    env = workflow_env(
        root,
        {
            "MAHAVISHNU_AKOSHA_URL": akosha.server.base,
            "AKOSHA_API_TOKEN": TOKEN,
            "MAHAVISHNU_SOURCE_NAME": SOURCE,
        },
    )
    server = start_server(root, env)
    yield server
    assert server.stop() == 0, server.log_path.read_text()[-3000:]


async def _outcomes(akosha: Akosha, count: int) -> Stored:
    """Akosha's outcomes of the source once `count` arrived (Mahavishnu pushes in the background)."""
    stored: Stored = {}
    for _ in range(600):
        stored = await stored_outcomes(akosha, SOURCE)
        if len(stored) >= count:
            return stored
        await asyncio.sleep(0.05)
    raise AssertionError(f"Akosha holds {len(stored)} outcomes of {SOURCE}, not {count}")


async def test_a_workflow_run_by_the_server_reaches_akosha(akosha: Akosha, mahavishnu: RunningServer) -> None:
    triggered = structured(
        call_tool(
            mahavishnu.url, "trigger_workflow", {"workflow": "agent", "params": {"prompt": "fail-in:gamma"}}
        )
    )
    view = wait_final(mahavishnu, triggered["workflow_id"])
    assert view["status"] == "partial", json.dumps(view)[:2000]

    stored = await _outcomes(akosha, len(FLEET))
    assert {repo: status for (_, repo), (status, _, _) in stored.items()} == {
        repo: "failed" if repo == "gamma" else "succeeded" for repo in FLEET
    }
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    found = ok(
        await call(
            akosha,
            token("viewer", [SOURCE]),
            "detect_anomalies",
            metric="workflow_failures",
            by="repo",
            window="3h",
            bucket="hour",
            until=until,
        )
    )
    assert {s["key"]: s["total"] for s in found["series"]}["gamma"] == 1
