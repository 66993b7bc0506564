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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.akosha.conftest import TOKEN, Akosha, start_akosha, stop_akosha, token
from tests.akosha.outcomes import outcome, post_outcomes, stored_outcomes
from tests.akosha.test_tools_http import call, ok
from tests.ecosystem.buddy import buddy_token, sessions_of, start_buddy
from tests.support.client import call_tool
from tests.support.gitrepos import git_fleet
from tests.support.server import RunningServer, base_env, start_server
from tests.workflows.test_over_mcp import structured, wait_final

AGENT = str(Path(__file__).resolve().parent / "fleet_agent.py")
FLEET = {name: ["python"] for name in ("alpha", "beta", "gamma", "delta", "epsilon")}
FAILING = ("gamma", "delta", "epsilon")
PROMPT = f"Replace the deprecated logging calls. failing: {','.join(FAILING)}"
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
                "MAHAVISHNU_AGENT_COMMAND": json.dumps([sys.executable, AGENT, "-p"]),
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


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def _quiet_day(before: datetime) -> list[dict[str, Any]]:
    """A day of earlier agent runs over the fleet, one workflow an hour: all pass but one run
    seven hours and one fifteen hours before (the usual noise)."""
    runs = []
    for hours in range(1, 24):
        at = _hour(before) - timedelta(hours=hours) + timedelta(minutes=30)
        for repo in FLEET:
            failed = (hours, repo) in ((7, "beta"), (15, "gamma"))
            runs.append(
                outcome(
                    repo,
                    "failed" if failed else "succeeded",
                    workflow_id=f"earlier-{hours}",
                    finished_at=at,
                )
            )
    return runs


def _clear_of_the_hour() -> None:
    """Start at least a minute before the next hour, so the runs' failures share one bucket."""
    left = 3600 - (time.time() % 3600)
    if left < 60:
        time.sleep(left + 1)


async def _search(ecosystem: Ecosystem, count: int) -> list[dict[str, Any]]:
    """Akosha's hits for the prompt's words once `count` memories are found (Mahavishnu writes
    the sessions, Session-Buddy pushes their memories, Akosha indexes them: all in the background)."""
    hits: list[dict[str, Any]] = []
    for _ in range(600):
        found = await call(
            ecosystem.akosha,
            token("viewer", [BUDDY]),
            "search_all_systems",
            query="deprecated logging calls",
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
    _clear_of_the_hour()
    history = _quiet_day(datetime.now(UTC))
    assert post_outcomes(ecosystem.akosha, MAHAVISHNU, history).status_code == 200

    triggered = structured(
        call_tool(
            ecosystem.mahavishnu.url, "trigger_workflow", {"workflow": "agent", "params": {"prompt": PROMPT}}
        )
    )
    view = wait_final(ecosystem.mahavishnu, triggered["workflow_id"])
    assert view["status"] == "partial", json.dumps(view)[:2000]

    # The memories: two per run (the prompt, and the outcome with the output's end), one session each.
    hits = await _search(ecosystem, 2 * len(FLEET))
    assert len(hits) == 2 * len(FLEET), hits
    assert {(h["source"], h["tenant"]) for h in hits} == {(BUDDY, TENANT)}
    for repo in FLEET:
        mine = {h["kind"]: h for h in hits if h["project"] == repo}
        assert sorted(mine) == ["fact", "note"], hits
        status, code = ("failed", 3) if repo in FAILING else ("succeeded", 0)
        assert status in mine["fact"]["tags"]
        assert f"ended {status}, exit code {code}" in mine["fact"]["content"]
        expected = (
            "the tests still fail after the change; giving up" if repo in FAILING else "done, the tests pass"
        )
        assert mine["fact"]["content"].endswith(f"agent in {repo}: {expected}"), "the output's end"
        assert mine["note"]["content"].endswith(PROMPT)
        assert triggered["workflow_id"] in mine["note"]["content"]
        (session,) = await sessions_of(ecosystem.buddy, ecosystem.buddy_token, repo)
        assert mine["note"]["session_id"] == mine["fact"]["session_id"] == session["id"]
        assert (session["goal"], session["status"]) == (PROMPT, "ended")

    # The failures: three in this hour, against a day of at most one an hour.
    await _outcomes_arrived(ecosystem.akosha, len(history) + len(FLEET))
    until = _hour(datetime.now(UTC)) + timedelta(hours=1)
    report = ok(
        await call(
            ecosystem.akosha,
            token("viewer", [MAHAVISHNU]),
            "detect_anomalies",
            metric="workflow_failures",
            window="24h",
            bucket="hour",
            until=until.isoformat(),
            # Five repositories fail at most five runs an hour: against a quiet day that is a
            # robust z of at most 3.4 on the Anscombe scale, under the default 3.5; the day's
            # single failures score 1.1.
            threshold=2.0,
        )
    )
    (series,) = report["series"]
    assert series["values"][-1] == len(FAILING)
    assert sorted(series["values"][:-1]) == [0] * 21 + [1, 1]
    assert [(a["index"], a["value"]) for a in series["anomalies"]] == [(23, len(FAILING))], series

    log = ecosystem.mahavishnu.log_path.read_text()
    assert ecosystem.buddy_token not in log
    assert "session_buddy_sessions_push_failed" not in log
