"""The workflow metrics through the official MCP client on the real server (SQLite and
PostgreSQL): outcomes sent to `/ingest/outcomes` become runs, failures, retries and durations
per bucket, grouped by repository, workflow or source; a planted failure spike is found by
`detect_anomalies`, a rising failure count by `analyze_trends`; a reader sees only its sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp_types import CallToolResult

from tests.akosha.conftest import Akosha, token
from tests.akosha.outcomes import outcome, post_outcomes
from tests.akosha.test_tools_http import call, ok

UNTIL = datetime(2026, 7, 1, tzinfo=UTC)
HOURS = 48
SPIKE = 30
"""The hour in which "web" failed 9 of its runs instead of none."""
WINDOW = {"window": f"{HOURS}h", "bucket": "hour", "until": UNTIL.isoformat()}
SOURCE, OTHER = "ci-east", "ci-west"


def _hour(k: int) -> datetime:
    return UNTIL - timedelta(hours=HOURS - k) + timedelta(minutes=20)


def _planted() -> list[dict[str, Any]]:
    """Each hour a workflow over "api" (always fine, 2 s) and over "web" (fine in 3 attempts,
    4 s, except at SPIKE, where 9 more workflows failed on it)."""
    sent = []
    for hour in range(HOURS):
        at = _hour(hour)
        sent += [
            outcome("api", workflow_id=f"h{hour}", duration=2.0, finished_at=at),
            outcome("web", workflow_id=f"h{hour}", attempts=3, duration=4.0, finished_at=at),
        ]
        if hour == SPIKE:
            sent += [
                outcome("web", "failed", workflow_id=f"h{hour}-{n}", attempts=3, duration=6.0, finished_at=at)
                for n in range(9)
            ]
    return sent


@pytest.fixture(scope="module")
def seeded(akosha: Akosha) -> Akosha:
    for source in (SOURCE, OTHER):
        answer = post_outcomes(akosha, source, _planted())
        assert answer.status_code == 200, answer.text
    return akosha


def series(result: CallToolResult) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in ok(result)["series"]}


async def test_a_failure_spike_per_repository_is_an_anomaly(seeded: Akosha) -> None:
    found = series(
        await call(
            seeded,
            token("viewer", [SOURCE]),
            "detect_anomalies",
            metric="workflow_failures",
            by="repo",
            **WINDOW,
        )
    )
    assert set(found) == {"api", "web"}
    assert found["api"]["values"] == [0] * HOURS
    assert found["api"]["anomalies"] == []
    assert [(a["index"], a["value"]) for a in found["web"]["anomalies"]] == [(SPIKE, 9)]


async def test_runs_retries_and_durations_per_bucket(seeded: Akosha) -> None:
    reader = token("viewer", [SOURCE])
    runs = series(await call(seeded, reader, "analyze_trends", metric="workflow_runs", by="repo", **WINDOW))
    assert runs["api"]["values"] == [1] * HOURS
    assert runs["web"]["total"] == HOURS + 9
    retries = series(await call(seeded, reader, "analyze_trends", metric="workflow_retries", **WINDOW))
    assert retries["all"]["values"] == [20 if hour == SPIKE else 2 for hour in range(HOURS)]
    durations = series(
        await call(seeded, reader, "analyze_trends", metric="workflow_duration", by="repo", **WINDOW)
    )
    assert durations["api"]["values"] == [2.0] * HOURS
    assert durations["web"]["values"][SPIKE] == 6.0, "the median of one 4 s run and nine 6 s ones"
    assert durations["web"]["direction"] == "flat"
    by_workflow = series(
        await call(seeded, reader, "analyze_trends", metric="workflow_runs", by="workflow", **WINDOW)
    )
    assert list(by_workflow) == ["test"]


async def test_a_reader_sees_only_the_outcomes_of_its_sources(seeded: Akosha) -> None:
    one = series(
        await call(
            seeded,
            token("viewer", [OTHER]),
            "analyze_trends",
            metric="workflow_failures",
            by="source",
            **WINDOW,
        )
    )
    assert list(one) == [OTHER]
    everyone = series(
        await call(
            seeded, token("admin"), "analyze_trends", metric="workflow_failures", by="source", **WINDOW
        )
    )
    assert {key: s["total"] for key, s in everyone.items()} == {SOURCE: 9, OTHER: 9}
    nobody = series(
        await call(
            seeded, token("viewer", ["zeta"]), "detect_anomalies", metric="workflow_failures", **WINDOW
        )
    )
    assert nobody["all"]["values"] == [0] * HOURS


async def test_a_grouping_the_workflow_metrics_do_not_have_is_one_line(seeded: Akosha) -> None:
    result = await call(seeded, token("viewer"), "analyze_trends", metric="workflow_failures", by="project")
    assert result.is_error
    assert "by: workflow_failures groups by none, source, repo, workflow" in result.content[0].text  # type: ignore[union-attr]
