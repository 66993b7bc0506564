"""Bucketed series from Akosha's store (SQLite and PostgreSQL): buckets aligned on UTC, zeros
where nothing happened, counts by source, project or none, sessions counted once per bucket,
tombstones and other windows left out, and only the caller's sources counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from mahavishnu.akosha.analyst import Analyst, Query
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.series import (
    MAX_BUCKETS,
    MAX_SERIES,
    MEMORY_METRICS,
    Grid,
    MetricRegistry,
    MetricSpec,
    Store,
    grid,
)
from mahavishnu.platform import InvalidArgumentError, Principal
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.platform.db import Database
from tests.akosha.records import parsed, tombstone, upsert

UNTIL = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
"""The tests' "now": the last whole hour is 11:00-12:00, the last whole day March 9."""
ADMIN = Principal(subject="admin", role="admin")
UTC_PLUS_TWO = datetime(2026, 3, 10, 14, 30, tzinfo=timezone(timedelta(hours=2)))
"""UNTIL on a clock two hours ahead: the same instant, the same buckets."""


def made(hours_before_noon: float) -> str:
    return (datetime(2026, 3, 10, 12, tzinfo=UTC) - timedelta(hours=hours_before_noon)).isoformat()


def test_buckets_are_whole_aligned_and_end_before_until() -> None:
    hourly = grid("48h", "hour", UTC_PLUS_TWO)
    assert hourly == Grid(datetime(2026, 3, 8, 12, tzinfo=UTC), timedelta(hours=1), 48)
    assert hourly.end == datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert hourly.index(datetime(2026, 3, 10, 11, 59, tzinfo=UTC)) == 47
    assert hourly.index(hourly.end) is None
    assert hourly.index(hourly.start - timedelta(seconds=1)) is None
    daily = grid("30d", "1d", UNTIL)
    assert (daily.start, daily.end, daily.count) == (
        datetime(2026, 2, 8, tzinfo=UTC),
        datetime(2026, 3, 10, tzinfo=UTC),
        30,
    )
    assert (hourly.season(), daily.season(), grid("12w", "1w", UNTIL).season()) == (24, 7, None)
    assert grid("1d", "15m", UNTIL).season() == 96
    assert grid("150m", "hour", UNTIL).count == 3, "a window not a multiple of the bucket rounds up"


@pytest.mark.parametrize(
    ("window", "bucket", "message"),
    [
        ("400d", "day", "window: at most 366d"),
        ("90d", "hour", f"bucket: 90d in buckets of 1h is 2160 buckets; at most {MAX_BUCKETS}"),
        ("2h", "hour", "window: must span at least 3 buckets of 1h"),
        ("30 days", "day", "window: '30 days' is not a duration"),
        ("30d", "fortnight", "bucket: 'fortnight' is not a duration"),
    ],
)
def test_bad_windows_and_buckets_are_one_line_argument_errors(window: str, bucket: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        grid(window, bucket, UNTIL)
    assert caught.value.message.startswith(message)
    assert "\n" not in caught.value.message


SEEDED = [
    upsert("a1", 1, source="alpha", created_at=made(0.5), session_id="s1"),
    upsert("a2", 1, source="alpha", created_at=made(0.2), session_id="s1"),
    upsert("a3", 1, source="alpha", created_at=made(3.5), session_id="s2", project="web"),
    upsert("a4", 1, source="alpha", created_at=made(3.4), session_id=None, project=None),
    upsert("a5", 1, source="alpha", created_at=made(30)),  # outside a 24h window
    upsert("a6", 1, source="alpha", created_at=made(1.5)),
    tombstone("a6", 2, source="alpha"),  # deleted: not counted
]
BETA = [upsert("b1", 1, source="beta", created_at=made(0.5), session_id="s1")]


@pytest.fixture
async def analyst(ak_database: Database, ring: KeyRing, inbox: Inbox) -> Analyst:
    await inbox.take("alpha", parsed(*SEEDED, source="alpha"))
    await inbox.take("beta", parsed(*BETA, source="beta"))
    return Analyst(Store(ak_database, ring), MetricRegistry(MEMORY_METRICS))


def counts(report: Any) -> dict[str, list[float]]:
    return {s.key: s.values for s in report.series}


def tail(values: list[float], n: int = 5) -> list[float]:
    return values[-n:]


async def test_memories_by_source_project_and_none(analyst: Analyst) -> None:
    hours = Query("memories", "source", "24h", "hour", UNTIL)
    by_source = counts(await analyst.trends(ADMIN, hours))
    assert {k: tail(v) for k, v in by_source.items()} == {
        "alpha": [0, 2, 0, 0, 2],  # 08:00 holds a3 and a4, 11:00 a1 and a2
        "beta": [0, 0, 0, 0, 1],
    }
    assert all(len(v) == 24 for v in by_source.values())
    assert sum(by_source["alpha"]) == 4, "a5 is older than the window, a6 is deleted"
    by_project = counts(await analyst.trends(ADMIN, Query("memories", "project", "24h", "hour", UNTIL)))
    assert {k: sum(v) for k, v in by_project.items()} == {"akosha": 3, "web": 1, "(none)": 1}
    everything = counts(await analyst.trends(ADMIN, Query("memories", "none", "24h", "hour", UNTIL)))
    assert list(everything) == ["all"]
    assert tail(everything["all"]) == [0, 2, 0, 0, 3]


async def test_sessions_are_counted_once_per_bucket_and_source(analyst: Analyst) -> None:
    report = await analyst.trends(ADMIN, Query("sessions", "none", "24h", "hour", UNTIL))
    assert tail(counts(report)["all"]) == [0, 1, 0, 0, 2]  # alpha's s1 (two memories), beta's s1


async def test_counts_hold_only_the_callers_sources(analyst: Analyst) -> None:
    reader = Principal(subject="r", role="viewer", tags=frozenset({"beta"}))
    query = Query("memories", "source", "24h", "hour", UNTIL)
    assert {k: sum(v) for k, v in counts(await analyst.trends(reader, query)).items()} == {"beta": 1}
    overall = counts(await analyst.trends(reader, Query("memories", "none", "24h", "hour", UNTIL)))
    assert sum(overall["all"]) == 1
    nobody = Principal(subject="n", role="operator", tags=frozenset({"zeta"}))
    assert counts(await analyst.trends(nobody, query)) == {}
    assert (
        sum(counts(await analyst.trends(nobody, Query("memories", "none", "24h", "hour", UNTIL)))["all"]) == 0
    )


async def test_unknown_metrics_and_groupings_are_refused(analyst: Analyst) -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"^metric: unknown metric 'commits'; one of memories, sessions$"
    ):
        await analyst.trends(ADMIN, Query("commits"))
    with pytest.raises(
        InvalidArgumentError, match=r"^by: memories groups by none, source, project, not 'repo'$"
    ):
        await analyst.anomalies(ADMIN, Query("memories", "repo"))
    with pytest.raises(InvalidArgumentError, match=r"^metric_b: unknown metric"):
        await analyst.correlate(ADMIN, Query("memories"), Query("nope"))
    with pytest.raises(InvalidArgumentError, match=r"^max_lag: must be between 0 and 21 for 24 buckets$"):
        await analyst.correlate(
            ADMIN, Query("memories", window="24h", bucket="hour"), Query("sessions"), max_lag=22
        )
    with pytest.raises(ValueError, match="registered already"):
        MetricRegistry([*MEMORY_METRICS, MEMORY_METRICS[0]])


async def test_a_registered_metric_joins_the_analyses() -> None:
    async def steps(store: Store, principal: Principal, on: Grid, by: str) -> dict[str, np.ndarray]:
        return {f"repo-{k:02d}": np.arange(on.count, dtype=np.float64) * k for k in range(MAX_SERIES + 3)}

    registry = MetricRegistry([MetricSpec("runs", "Workflow runs.", ("repository",), steps)])
    analyst = Analyst(Store(None, None), registry)  # type: ignore[arg-type]  # this metric reads neither
    report = await analyst.trends(ADMIN, Query("runs", "repository", "10d", "day", UNTIL))
    assert report.omitted == 3
    assert [s.key for s in report.series] == sorted(f"repo-{k:02d}" for k in range(3, MAX_SERIES + 3))
    assert report.series[0].slope == pytest.approx(3)
    assert report.series[0].direction == "rising"
    assert report.series[0].slope_per_day == pytest.approx(3)


def _office_hours(on: Grid) -> np.ndarray:
    """Poisson counts, busy from 09:00 to 17:59 (8 an hour) and quiet otherwise (1 an hour)."""
    hours = np.array([t.hour for t in on.times()])
    return np.where((hours >= 9) & (hours <= 17), 8.0, 1.0)


async def test_counts_are_judged_on_an_even_scale_and_beyond_their_daily_cycle() -> None:
    """A busy hour's ordinary spread is no alarm beside a quiet hour's, and office hours are a
    cycle, not two change points a day: only what was planted is found."""
    planted_spike, planted_shift = 200, 180

    def collect_for(seed: int) -> MetricSpec:
        async def collect(store: Store, principal: Principal, on: Grid, by: str) -> dict[str, np.ndarray]:
            rng = np.random.default_rng(seed)
            busy = rng.poisson(_office_hours(on)).astype(np.float64)
            busy[planted_spike] += 25
            shifted = rng.poisson(np.where(np.arange(on.count) < planted_shift, 3.0, 9.0)).astype(np.float64)
            return {"busy": busy, "shifted": shifted}

        return MetricSpec("memories", "Planted counts.", ("source",), collect)

    query = Query("memories", "source", "14d", "hour", UNTIL)
    for seed in range(5):
        analyst = Analyst(Store(None, None), MetricRegistry([collect_for(seed)]))  # type: ignore[arg-type]
        anomalies = {s.key: s for s in (await analyst.anomalies(ADMIN, query)).series}
        assert [a.index for a in anomalies["busy"].anomalies] == [planted_spike], seed
        usual = _office_hours(query.grid())[planted_spike]  # 20:00, a quiet hour
        assert anomalies["busy"].anomalies[0].expected == pytest.approx(usual, abs=1)
        assert anomalies["shifted"].anomalies == []
        changes = {s.key: s for s in (await analyst.changepoints(ADMIN, query)).series}
        assert [c.index for c in changes["shifted"].changepoints] in ([planted_shift + d] for d in (-1, 0, 1))
        assert changes["shifted"].season == 24
        assert all(abs(c.index - planted_spike) <= 2 for c in changes["busy"].changepoints), seed
