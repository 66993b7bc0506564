"""Time series of what the systems report, in fixed buckets so that systems line up.

A bucket is a whole multiple of its size since the Unix epoch (UTC): every system's 14:00 hour
is the same bucket, a day starts at midnight UTC, and a bucket with nothing in it is a zero,
not a gap. A series ends at the last whole bucket before `until` (default now): a bucket still
filling would look like a drop.

Metrics are named in a `MetricRegistry`; each says what it can be grouped by and collects its
own values, so a metric over another kind of record (Mahavishnu's workflow outcomes by
repository) is one more `MetricSpec`. The memory metrics read the sealed documents (the times
and projects are inside), only the rows the caller's scope holds, so every count is scoped.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from mahavishnu.akosha.keys import open_document
from mahavishnu.akosha.models import LIVE, Record
from mahavishnu.akosha.scope import in_scope
from mahavishnu.platform import Database, InvalidArgumentError, Principal
from mahavishnu.platform.crypto import KeyRing

__all__ = [
    "ALL",
    "MAX_BUCKETS",
    "MAX_SERIES",
    "MEMORY_METRICS",
    "NO_PROJECT",
    "Collector",
    "Frame",
    "Grid",
    "MetricRegistry",
    "MetricSpec",
    "Store",
    "bucket_totals",
    "grid",
    "parse_duration",
    "zeros",
]

MAX_BUCKETS = 2000
"""Buckets in one series: bounds the work (Theil-Sen compares every two) and the answer."""
MAX_WINDOW = timedelta(days=366)
MIN_BUCKET = timedelta(minutes=1)
MAX_SERIES = 20
"""Series in one answer, the largest first; the rest are counted in `omitted`."""
MIN_BUCKETS = 3
ALL = "all"
"""The one series's name when nothing groups it (`by="none"`)."""
NO_PROJECT = "(none)"
CLOCK_SKEW = timedelta(hours=1)
"""How far a source's clock may run ahead of Akosha's: a memory is received after it is made,
so rows received before the window's start (less this) are not read at all."""
OPEN_CHUNK = 500
"""Documents opened per trip to a worker thread, so decryption never stalls the event loop."""

_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAMED = {"hour": "1h", "day": "1d", "week": "1w"}


def parse_duration(text: str, field: str) -> timedelta:
    """'90m', '48h', '30d', '2w' (and 'hour', 'day', 'week')."""
    match = _DURATION.match(_NAMED.get(text, text))
    if match is None:
        raise InvalidArgumentError(f"{field}: {text!r} is not a duration such as 48h, 30d or day")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def _label(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit in ("w", "d", "h"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds // 60}m"


@dataclass(frozen=True, slots=True)
class Grid:
    """`count` buckets of `step`, the first starting at `start` (aligned on the epoch)."""

    start: datetime
    step: timedelta
    count: int

    @property
    def end(self) -> datetime:
        return self.start + self.step * self.count

    @property
    def label(self) -> str:
        return _label(self.step)

    def times(self) -> list[datetime]:
        return [self.start + self.step * k for k in range(self.count)]

    def index(self, at: datetime) -> int | None:
        """The bucket `at` falls in; None outside the grid."""
        k = math.floor((at - self.start) / self.step)
        return k if 0 <= k < self.count else None

    def season(self) -> int | None:
        """Buckets per cycle: a day of sub-day buckets, a week of days; None for other sizes."""
        seconds = int(self.step.total_seconds())
        if seconds < 86400 and 86400 % seconds == 0:
            return 86400 // seconds
        return 7 if seconds == 86400 else None


def grid(window: str, bucket: str, until: datetime | None = None) -> Grid:
    """The whole buckets of `bucket` covering the `window` before `until` (default now)."""
    span = parse_duration(window, "window")
    step = parse_duration(bucket, "bucket")
    if span > MAX_WINDOW:
        raise InvalidArgumentError(f"window: at most {MAX_WINDOW.days}d")
    if step < MIN_BUCKET:
        raise InvalidArgumentError("bucket: at least 1m")
    count = math.ceil(span / step)
    if count < MIN_BUCKETS:
        raise InvalidArgumentError(f"window: must span at least {MIN_BUCKETS} buckets of {_label(step)}")
    if count > MAX_BUCKETS:
        raise InvalidArgumentError(
            f"bucket: {window} in buckets of {_label(step)} is {count} buckets; at most {MAX_BUCKETS} "
            "(use a larger bucket or a shorter window)"
        )
    now = (until or datetime.now(UTC)).astimezone(UTC)
    seconds = int(step.total_seconds())
    end = datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, UTC)
    return Grid(end - step * count, step, count)


@dataclass(frozen=True, slots=True)
class Store:
    """What metrics read from: Akosha's database and the key ring its documents are sealed under."""

    db: Database
    ring: KeyRing


Collector = Callable[[Store, Principal, Grid, str], Awaitable[dict[str, npt.NDArray[np.float64]]]]
"""(store, caller, grid, by) -> one array of `grid.count` values per group, in the caller's scope."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    description: str
    groups: tuple[str, ...]
    """What `by` may name besides "none"."""
    collect: Collector
    counts: bool = True
    """Its values are counts of events: anomalies and change points are judged on the Anscombe
    scale, where their noise is even at every level. False for measures (a duration)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A metric's series on one grid: the largest `MAX_SERIES` groups, by name."""

    metric: str
    by: str
    grid: Grid
    series: dict[str, npt.NDArray[np.float64]]
    omitted: int
    """Groups left out (smaller than every one kept)."""
    counts: bool


class MetricRegistry:
    def __init__(self, specs: Iterable[MetricSpec] = ()) -> None:
        self._specs: dict[str, MetricSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: MetricSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"metric {spec.name!r} is registered already")
        self._specs[spec.name] = spec

    @property
    def specs(self) -> Sequence[MetricSpec]:
        return list(self._specs.values())

    def spec(self, name: str, by: str, field: str = "metric") -> MetricSpec:
        """The metric `name`, checked to group by `by`; InvalidArgumentError otherwise."""
        found = self._specs.get(name)
        if found is None:
            raise InvalidArgumentError(f"{field}: unknown metric {name!r}; one of {', '.join(self._specs)}")
        if by != "none" and by not in found.groups:
            choices = ", ".join(("none", *found.groups))
            raise InvalidArgumentError(f"by: {name} groups by {choices}, not {by!r}")
        return found

    async def frame(self, store: Store, principal: Principal, name: str, by: str, on: Grid) -> Frame:
        spec = self.spec(name, by)
        collected = await spec.collect(store, principal, on, by)
        ranked = sorted(collected.items(), key=lambda item: (-float(item[1].sum()), item[0]))
        kept = dict(sorted(ranked[:MAX_SERIES]))
        return Frame(name, by, on, kept, max(len(ranked) - MAX_SERIES, 0), spec.counts)


# --- the memory metrics -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Memory:
    source: str
    project: str | None
    session: str | None
    bucket: int


def _group(memory: _Memory, by: str) -> str:
    if by == "source":
        return memory.source
    if by == "project":
        return memory.project or NO_PROJECT
    return ALL


def _open_chunk(ring: KeyRing, rows: Sequence[Record], on: Grid) -> list[_Memory]:
    found = []
    for row in rows:
        assert row.sealed is not None  # live rows hold their document
        document = open_document(ring, row.source, row.tenant, row.memory_id, row.version, row.sealed)
        bucket = on.index(document.created_at)
        if bucket is not None:
            found.append(_Memory(row.source, document.project, document.session_id, bucket))
    return found


async def _memories(store: Store, principal: Principal, on: Grid) -> list[_Memory]:
    """The live memories in scope made within the grid (by their source's `created_at`)."""
    query = select(Record).where(
        in_scope(principal), Record.state == LIVE, Record.received_at >= on.start - CLOCK_SKEW
    )
    found: list[_Memory] = []
    async with store.db.session() as session:
        result = await session.stream_scalars(query.execution_options(yield_per=OPEN_CHUNK))
        async for rows in result.partitions(OPEN_CHUNK):
            found += await asyncio.to_thread(_open_chunk, store.ring, rows, on)
    return found


def zeros(on: Grid) -> npt.NDArray[np.float64]:
    """A series of `on` with nothing in it yet."""
    return np.zeros(on.count, dtype=np.float64)


def bucket_totals(
    on: Grid, by: str, counted: Mapping[tuple[str, int], float]
) -> dict[str, npt.NDArray[np.float64]]:
    """One series per group from (group, bucket) → value; by "none", the one series even if empty."""
    series: dict[str, npt.NDArray[np.float64]] = {} if by != "none" else {ALL: zeros(on)}
    for (group, bucket), value in counted.items():
        series.setdefault(group, zeros(on))[bucket] += value
    return series


async def _count_memories(
    store: Store, principal: Principal, on: Grid, by: str
) -> dict[str, npt.NDArray[np.float64]]:
    counted: dict[tuple[str, int], int] = {}
    for memory in await _memories(store, principal, on):
        key = (_group(memory, by), memory.bucket)
        counted[key] = counted.get(key, 0) + 1
    return bucket_totals(on, by, counted)


async def _count_sessions(
    store: Store, principal: Principal, on: Grid, by: str
) -> dict[str, npt.NDArray[np.float64]]:
    seen: set[tuple[str, int, str, str]] = set()
    for memory in await _memories(store, principal, on):
        if memory.session is not None:
            seen.add((_group(memory, by), memory.bucket, memory.source, memory.session))
    counted: dict[tuple[str, int], int] = {}
    for group, bucket, _, _ in seen:
        counted[(group, bucket)] = counted.get((group, bucket), 0) + 1
    return bucket_totals(on, by, counted)


MEMORY_METRICS = (
    MetricSpec(
        "memories",
        "Memories made per bucket (by their source's created_at), live ones only.",
        ("source", "project"),
        _count_memories,
    ),
    MetricSpec(
        "sessions",
        "Sessions with at least one memory made in the bucket (a session per source and id).",
        ("source", "project"),
        _count_sessions,
    ),
)
