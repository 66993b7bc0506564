"""Grandfather-father-son retention, as properties over arbitrary backup histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mahavishnu.ops.backup.retention import select_keep

START = datetime(2024, 1, 1, tzinfo=UTC)
stamps = st.lists(
    st.integers(0, 3 * 365 * 24 * 60).map(lambda minutes: START + timedelta(minutes=minutes)), max_size=400
)
counts = st.integers(0, 40)


@settings(max_examples=300)
@given(stamps, counts, counts, counts)
def test_retention_properties(timestamps: list[datetime], daily: int, weekly: int, monthly: int) -> None:
    keep = select_keep(timestamps, daily=daily, weekly=weekly, monthly=monthly)
    assert keep <= set(timestamps)
    assert len(keep) <= daily + weekly + monthly
    if timestamps and (daily or weekly or monthly):
        assert max(timestamps) in keep  # the newest backup is never pruned
    # Idempotent: pruning what was kept keeps all of it.
    assert select_keep(keep, daily=daily, weekly=weekly, monthly=monthly) == keep
    # Each of the most recent `daily` days with backups keeps its newest one ...
    for day in sorted({t.date() for t in timestamps}, reverse=True)[:daily]:
        assert max(t for t in timestamps if t.date() == day) in keep
    # ... and anything kept is the newest backup of its own day (a representative, never a duplicate).
    for kept in keep:
        assert kept == max(t for t in timestamps if t.date() == kept.date())


@given(stamps)
def test_default_policy_bounds(timestamps: list[datetime]) -> None:
    keep = select_keep(timestamps, daily=30, weekly=12, monthly=6)
    assert len(keep) <= 48
    months = sorted({(t.year, t.month) for t in timestamps}, reverse=True)[:6]
    for year, month in months:
        assert any((t.year, t.month) == (year, month) for t in keep)


def test_a_concrete_history() -> None:
    # Two backups a day for 400 days.
    history = [START + timedelta(hours=12 * i) for i in range(800)]
    keep = select_keep(history, daily=30, weekly=12, monthly=6)
    newest = max(history)
    daily = {t for t in keep if newest - t < timedelta(days=30)}
    assert len(daily) == 30
    assert all(t.hour == 12 for t in daily)  # the newer of each day's two
    assert len(keep) < 30 + 12 + 6
    assert min(keep) > newest - timedelta(days=200)


def test_nothing_to_keep_when_all_counts_are_zero() -> None:
    assert select_keep([START], daily=0, weekly=0, monthly=0) == set()
