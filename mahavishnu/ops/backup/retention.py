"""Grandfather-father-son retention: which backups to keep, by their own timestamps.

Walking from the newest backup back, the newest backup of each of the last
`daily` distinct days is kept, likewise for the last `weekly` ISO weeks and
the last `monthly` months. Everything else may go. The rule is a pure
function so it can be property-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

__all__ = ["select_keep"]

PeriodKey = Callable[[datetime], tuple[int, ...]]


def _day(ts: datetime) -> tuple[int, ...]:
    return (ts.year, ts.month, ts.day)


def _week(ts: datetime) -> tuple[int, ...]:
    iso = ts.isocalendar()
    return (iso.year, iso.week)


def _month(ts: datetime) -> tuple[int, ...]:
    return (ts.year, ts.month)


def select_keep(timestamps: Iterable[datetime], *, daily: int, weekly: int, monthly: int) -> set[datetime]:
    ordered = sorted(set(timestamps), reverse=True)
    keep: set[datetime] = set()
    for period, count in ((_day, daily), (_week, weekly), (_month, monthly)):
        seen: set[tuple[int, ...]] = set()
        for ts in ordered:
            key = period(ts)
            if key in seen:
                continue
            if len(seen) == count:
                break
            seen.add(key)
            keep.add(ts)
    return keep
