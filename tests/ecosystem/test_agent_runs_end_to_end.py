"""The three services as deployed, each a real server over loopback: Mahavishnu runs the `agent`
workflow (a real agent script, failing in three of five repositories) and sends each repository's
outcome to Akosha and each run to Session-Buddy as a session; Session-Buddy pushes the runs'
memories to Akosha. Akosha then finds those memories with `search_all_systems`, and the
failures as a spike with `detect_anomalies` over a day of quieter history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.akosha.outcomes import post_outcomes, stored_outcomes
from tests.akosha.test_tools_http import call, ok
from tests.ecosystem.agent_story import (
    AGENT,
    SEARCHED,
    anomaly_arguments,
    check_memories,
    check_spike,
    clear_of_the_hour,
    prompt,
    quiet_day,
)
from tests.ecosystem.buddy import buddy_token, sessions_of, start_buddy
from tests.support.client import call_tool
from tests.support.gitrepos import git_fleet
from tests.support.server import RunningServer, base_env, start_server
from tests.workflows.test_over_mcp import structured, wait_final

FLEET = {name: ["python"] for name in ("alpha", "beta", "gamma", "delta", "epsilon")}
FAILING = ("gamma", "delta", "epsilon")
PROMPT = prompt(FAILING)
MAHAVISHNU = "mahavishnu-e2e"
"""Mahavishnu's source name in Akosha (its outcomes)."""
BUDDY = "buddy-e2e"
"""Session-Buddy's source name in Akosha (its memories)."""
TENANT = "platform-team"
"""Whose memories Mahavishnu's sessions are: its Session-Buddy token's tenant."""


@dataclass(frozen=True)
class Ecosystem:
    akosha: Akosha
    buddy: RunningServer
    mahavishnu: RunningServer
    buddy_token: str


@pytest.fixture
def ecosystem(tmp_path: Path) -> Iterator[Ecosystem]:
    """Akosha, Session-Buddy pushing to it, and Mahavishnu writing to both; each stopped cleanly."""
    with contextlib.ExitStack() as stack:
        (tmp_path / "akosha").mkdir()
        akosha = start_akosha(tmp_path / "akosha", "sqlite")
        stack.callback(stop_akosha, akosha)
        buddy = start_buddy(
            tmp_path / "buddy",
            SESSION_BUDDY_AKOSHA_URL=akosha.server.base,
            AKOSHA_API_TOKEN=TOKEN,
            SESSION_BUDDY_SOURCE_NAME=BUDDY,
        )
        stack.callback(_stopped, buddy)
        root = tmp_path / "mahavishnu"
        root.mkdir()
        credential = buddy_token(TENANT)
        env = base_env(
            root,
            git_fleet(root, FLEET),
            {
                "MAHAVISHNU_DATA_DIR": str(root / "var"),
                "MAHAVISHNU_AGENT_COMMAND": json.dumps([sys.executable, str(AGENT), "-p"]),
                "MAHAVISHNU_ENGINE_POLL_SECONDS": "0.1",
                "MAHAVISHNU_AKOSHA_URL": akosha.server.base,
                "AKOSHA_API_TOKEN": TOKEN,
                "MAHAVISHNU_SOURCE_NAME": MAHAVISHNU,
                "MAHAVISHNU_SESSION_BUDDY_URL": buddy.base,
                "MAHAVISHNU_SESSION_BUDDY_TOKEN": credential,
            },
        )
        mahavishnu = start_server(root, env)
        stack.callback(_stopped, mahavishnu)
        yield Ecosystem(akosha, buddy, mahavishnu, credential)


def _stopped(server: RunningServer) -> None:
    assert server.stop() == 0, server.log_path.read_text()[-3000:]


async def _search(ecosystem: Ecosystem, count: int) -> list[dict[str, Any]]:
    """Akosha's hits for the prompt's words once `count` memories are found (Mahavishnu writes
    the sessions, Session-Buddy pushes their memories, Akosha indexes them: all in the background)."""
    hits: list[dict[str, Any]] = []
    for _ in range(600):
        found = await call(
            ecosystem.akosha,
            token("viewer", [BUDDY]),
            "search_all_systems",
            query=SEARCHED,
            mode="keyword",
            limit=50,
        )
        if not found.is_error and found.structured_content is not None:
            hits = found.structured_content["hits"]
            if len(hits) >= count:
                return hits
        await asyncio.sleep(0.1)
    raise AssertionError(f"Akosha found {len(hits)} of the runs' memories, not {count}")


async def _outcomes_arrived(akosha: Akosha, count: int) -> None:
    for _ in range(600):
        if len(await stored_outcomes(akosha, MAHAVISHNU)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Akosha never held {count} outcomes of {MAHAVISHNU}")


async def test_an_agent_workflow_reaches_akosha_as_memories_and_as_a_failure_spike(
    ecosystem: Ecosystem,
) -> None:
    clear_of_the_hour()
    history = quiet_day(list(FLEET), datetime.now(UTC))
    anomalies = anomaly_arguments(threshold=2.0)
    assert post_outcomes(ecosystem.akosha, MAHAVISHNU, history).status_code == 200

    triggered = structured(
        call_tool(
            ecosystem.mahavishnu.url, "trigger_workflow", {"workflow": "agent", "params": {"prompt": PROMPT}}
        )
    )
    view = wait_final(ecosystem.mahavishnu, triggered["workflow_id"])
    assert view["status"] == "partial", json.dumps(view)[:2000]

    hits = await _search(ecosystem, 2 * len(FLEET))
    assert {(h["source"], h["tenant"]) for h in hits} == {(BUDDY, TENANT)}
    sessions = check_memories(hits, list(FLEET), FAILING, triggered["workflow_id"])
    for repo, session_id in sessions.items():
        (session,) = await sessions_of(ecosystem.buddy, ecosystem.buddy_token, repo)
        assert session_id == session["id"]
        assert (session["goal"], session["status"]) == (PROMPT, "ended")

    # The failures: three in this hour, against a day of at most one an hour.
    await _outcomes_arrived(ecosystem.akosha, len(history) + len(FLEET))
    report = ok(await call(ecosystem.akosha, token("viewer", [MAHAVISHNU]), "detect_anomalies", **anomalies))
    check_spike(report, len(FAILING))

    log = ecosystem.mahavishnu.log_path.read_text()
    assert ecosystem.buddy_token not in log
    assert "session_buddy_sessions_push_failed" not in log
