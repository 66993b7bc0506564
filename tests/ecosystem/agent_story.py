"""What an `agent` workflow over a fleet must leave in Akosha, checked the same way wherever the
three services run: as local servers (test_agent_runs_end_to_end.py) and as the compose stack
(tests/container/test_compose.py). The agent is fleet_agent.py, failing where the prompt says."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.akosha.outcomes import outcome

AGENT = Path(__file__).resolve().parent / "fleet_agent.py"
"""The stand-in agent CLI (`claude -p PROMPT`): fails with exit code 3 where the prompt says."""
SEARCHED = "deprecated logging calls"
"""Words of every prompt below: what Akosha is asked for."""


def prompt(failing: Iterable[str]) -> str:
    return f"Replace the {SEARCHED}. failing: {','.join(failing)}"


def hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def quiet_day(repos: Sequence[str], before: datetime) -> list[dict[str, Any]]:
    """A day of earlier agent runs over the fleet, one workflow an hour: all pass but one run
    seven hours and one fifteen hours before (the usual noise)."""
    noisy = {(7, repos[1 % len(repos)]), (15, repos[2 % len(repos)])}
    runs = []
    for hours in range(1, 24):
        at = hour(before) - timedelta(hours=hours) + timedelta(minutes=30)
        for repo in repos:
            failed = (hours, repo) in noisy
            runs.append(
                outcome(
                    repo, "failed" if failed else "succeeded", workflow_id=f"earlier-{hours}", finished_at=at
                )
            )
    return runs


def clear_of_the_hour(margin_seconds: float = 60) -> None:
    """Start at least `margin_seconds` before the next hour, so the runs' failures share one
    bucket (the hour `anomaly_arguments` judges when called right after)."""
    left = 3600 - (time.time() % 3600)
    if left < margin_seconds:
        time.sleep(left + 1)


def check_memories(
    hits: Sequence[dict[str, Any]], repos: Sequence[str], failing: Sequence[str], workflow_id: str
) -> dict[str, str]:
    """Two memories per run (the prompt, and the outcome with the output's end), both in the
    run's session; returns each repository's session id."""
    assert len(hits) == 2 * len(repos), hits
    sessions = {}
    for repo in repos:
        mine = {h["kind"]: h for h in hits if h["project"] == repo}
        assert sorted(mine) == ["fact", "note"], hits
        status, code = ("failed", 3) if repo in failing else ("succeeded", 0)
        assert status in mine["fact"]["tags"]
        assert f"ended {status}, exit code {code}" in mine["fact"]["content"]
        expected = (
            "the tests still fail after the change; giving up" if repo in failing else "done, the tests pass"
        )
        assert mine["fact"]["content"].endswith(f"agent in {repo}: {expected}"), "the output's end"
        assert mine["note"]["content"].endswith(prompt(failing))
        assert workflow_id in mine["note"]["content"]
        assert mine["note"]["session_id"] == mine["fact"]["session_id"]
        sessions[repo] = mine["note"]["session_id"]
    return sessions


def anomaly_arguments(threshold: float) -> dict[str, Any]:
    """`detect_anomalies` of workflow failures by the hour over the day up to this hour.

    On the Anscombe scale (unit noise) the day's single failures score 1.1 against a median of
    none; n failures in one hour score 2 sqrt(n + 3/8) - 1.22: 1.9 for two, 2.7 for three."""
    until = hour(datetime.now(UTC)) + timedelta(hours=1)
    return {
        "metric": "workflow_failures",
        "window": "24h",
        "bucket": "hour",
        "until": until.isoformat(),
        "threshold": threshold,
    }


def check_spike(report: dict[str, Any], failures: int) -> None:
    """This hour's failures, the one anomaly over a day with two single failures."""
    (series,) = report["series"]
    assert series["values"][-1] == failures
    assert sorted(series["values"][:-1]) == [0] * 21 + [1, 1]
    assert [(a["index"], a["value"]) for a in series["anomalies"]] == [(23, failures)], series
