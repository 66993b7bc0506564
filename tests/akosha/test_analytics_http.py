"""The analytics tools through the official MCP client on the real server (SQLite and
PostgreSQL): planted memories found as trends, anomalies, change points and correlations, the
chart as an MCP image, counts narrowed to the token's sources, and bad arguments answered in
one line (never a 5xx)."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp_types import CallToolResult, ImageContent, TextContent
from PIL import Image

from tests.akosha.conftest import Akosha, token
from tests.akosha.records import batch, upsert
from tests.akosha.test_tools_http import call, ok
from tests.support.client import call_tool, mcp_client

UNTIL = datetime(2026, 6, 1, tzinfo=UTC)
HOURS = 72
SPIKE = 50
"""The hour (from the window's start) where "steady" made 12 memories instead of 2."""
SHIFT = 36
"""The hour from which "shifting" made 6 memories an hour instead of 1."""
WINDOW = {"window": f"{HOURS}h", "bucket": "hour", "until": UNTIL.isoformat()}


def _hour(k: int) -> datetime:
    return UNTIL - timedelta(hours=HOURS - k) + timedelta(minutes=10)


def _memories(source: str, per_hour: list[int]) -> list[dict[str, Any]]:
    return [
        upsert(
            f"{source}-{hour}-{n}",
            1,
            source=source,
            created_at=_hour(hour).isoformat(),
            session_id=f"s{hour // 6}",
            project="web" if n % 2 else "api",
        )
        for hour, count in enumerate(per_hour)
        for n in range(count)
    ]


STEADY = [12 if hour == SPIKE else 2 for hour in range(HOURS)]
SHIFTING = [1 if hour < SHIFT else 6 for hour in range(HOURS)]
ECHO = [3 + STEADY[hour - 2] if hour >= 2 else 5 for hour in range(HOURS)]
"""Steady's pattern two hours later (and one more memory an hour)."""
PLANTED = {"steady": STEADY, "shifting": SHIFTING, "echo": ECHO}


@pytest.fixture(scope="module")
def seeded(akosha: Akosha) -> Akosha:
    for source, counts in PLANTED.items():
        answer = akosha.post(batch(*_memories(source, counts), source=source))
        assert answer.status_code == 200, answer.text
    return akosha


def series(result: CallToolResult) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in ok(result)["series"]}


async def test_a_reader_of_one_source_sees_only_its_counts(seeded: Akosha) -> None:
    steady_only = token("viewer", ["steady"])
    found = series(
        await call(seeded, steady_only, "analyze_trends", metric="memories", by="source", **WINDOW)
    )
    assert list(found) == ["steady"]
    assert found["steady"]["values"] == STEADY
    overall = series(await call(seeded, steady_only, "analyze_trends", metric="memories", **WINDOW))
    assert overall["all"]["total"] == sum(STEADY)
    admin = series(
        await call(seeded, token("admin"), "analyze_trends", metric="memories", by="source", **WINDOW)
    )
    assert {key: s["total"] for key, s in admin.items()} == {key: sum(c) for key, c in PLANTED.items()}
    nothing = series(
        await call(seeded, token("viewer", ["zeta"]), "detect_anomalies", metric="memories", **WINDOW)
    )
    assert nothing["all"]["values"] == [0] * HOURS
    assert nothing["all"]["anomalies"] == []


async def test_trends_anomalies_and_change_points_find_what_was_planted(seeded: Akosha) -> None:
    admin = token("operator")
    trends = series(await call(seeded, admin, "analyze_trends", metric="memories", by="source", **WINDOW))
    assert trends["shifting"]["slope"] > 0  # a step: half the pairs rise, half are ties
    assert trends["shifting"]["slope_low"] >= 0
    assert trends["steady"]["slope"] == 0
    assert trends["steady"]["direction"] == "flat"
    spikes = series(await call(seeded, admin, "detect_anomalies", metric="memories", by="source", **WINDOW))
    assert [(a["index"], a["value"]) for a in spikes["steady"]["anomalies"]] == [(SPIKE, 12)]
    assert spikes["steady"]["anomalies"][0]["at"] == (
        UNTIL - timedelta(hours=HOURS - SPIKE)
    ).isoformat().replace("+00:00", "Z")
    assert spikes["steady"]["season"] is None, "three days of hours: one cycle short of a season"
    shifts = series(
        await call(seeded, admin, "detect_changepoints", metric="memories", by="source", **WINDOW)
    )
    assert [(c["index"], c["before"], c["after"]) for c in shifts["shifting"]["changepoints"]] == [
        (SHIFT, 1, 6)
    ]
    projects = series(await call(seeded, admin, "analyze_trends", metric="sessions", by="project", **WINDOW))
    assert set(projects) == {"api", "web"}


async def test_correlation_finds_the_echo_and_its_lag(seeded: Akosha) -> None:
    arguments = {"metric_a": "memories", "metric_b": "memories", "by": "source", **WINDOW}
    found = ok(await call(seeded, token("viewer"), "correlate_systems", max_lag=3, **arguments))
    best = found["pairs"][0]
    assert (best["a"], best["b"], best["lag"]) == ("echo", "steady", -2), "steady leads echo by 2 hours"
    assert best["r"] == pytest.approx(1)
    assert found["a_values"] == ECHO
    assert found["b_values"] == STEADY
    assert [(p["a"], p["b"]) for p in found["pairs"]][1:] in (
        [("echo", "shifting"), ("shifting", "steady")],
        [("shifting", "steady"), ("echo", "shifting")],
    ), "one metric: each pair of sources once"
    same_time = ok(await call(seeded, token("viewer"), "correlate_systems", max_lag=0, **arguments))
    assert all(p["lag"] == 0 for p in same_time["pairs"])
    assert abs(same_time["pairs"][0]["r"]) < 0.9
    echo_only = ok(await call(seeded, token("viewer", ["echo"]), "correlate_systems", max_lag=3, **arguments))
    assert echo_only["pairs"] == [], "one series in scope: nothing to pair it with"


async def test_chart_true_adds_a_png_image_beside_the_numbers(seeded: Akosha) -> None:
    result = await call(
        seeded, token("viewer"), "detect_anomalies", metric="memories", by="source", chart=True, **WINDOW
    )
    numbers = ok(result)
    text, image = result.content
    assert isinstance(text, TextContent)
    assert isinstance(image, ImageContent)
    assert image.mime_type == "image/png"
    png = Image.open(io.BytesIO(base64.b64decode(image.data)))
    assert png.format == "PNG"
    assert png.width >= 800
    assert '"anomalies"' in text.text
    assert len(numbers["series"]) == len(PLANTED)
    plain = await call(seeded, token("viewer"), "detect_anomalies", metric="memories", **WINDOW)
    assert [type(block) for block in plain.content] == [TextContent]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (
            "analyze_trends",
            {"metric": "commits"},
            "metric: unknown metric 'commits'; one of memories, sessions",
        ),
        (
            "detect_anomalies",
            {"metric": "memories", "by": "repo"},
            "by: memories groups by none, source, project",
        ),
        ("detect_changepoints", {"metric": "memories", "window": "400d"}, "window: at most 366d"),
        (
            "analyze_trends",
            {"metric": "memories", "window": "30d", "bucket": "1m"},
            "bucket: 30d in buckets of 1m is 43200 buckets; at most 2000",
        ),
        (
            "correlate_systems",
            {"metric_a": "memories", "metric_b": "sessions", "window": "5d", "max_lag": 100},
            "max_lag: must be between 0 and 2 for 5 buckets",
        ),
        ("detect_anomalies", {"metric": "memories", "window": "30 days"}, "invalid arguments for tool"),
        ("detect_anomalies", {"metric": "memories", "threshold": 1}, "threshold: must be"),
    ],
)
async def test_bad_arguments_are_one_line_errors(
    seeded: Akosha, tool: str, arguments: dict[str, Any], message: str
) -> None:
    result = await call(seeded, token("viewer"), tool, **arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert message in text
    assert "\n" not in text
    raw = call_tool(seeded.server.url, tool, arguments, token=token("viewer"))
    assert raw.status_code == 200, raw.text


async def test_the_tools_publish_their_reports_schemas_and_are_read_only(seeded: Akosha) -> None:
    async with mcp_client(seeded.server.url, token("viewer")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    answers = {
        "analyze_trends": "series",
        "detect_anomalies": "series",
        "detect_changepoints": "series",
        "correlate_systems": "pairs",
    }
    for name, field in answers.items():
        schema = tools[name].output_schema
        assert schema is not None
        assert field in schema["properties"], name
        assert tools[name].annotations is not None
        assert tools[name].annotations.read_only_hint is True
        assert "chart" in tools[name].input_schema["properties"]
