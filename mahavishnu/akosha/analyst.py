"""From a question (metric, grouping, window, bucket) to a report: the series in the caller's
scope, each judged by `analytics`. Shared by the MCP tools and `mahavishnu akosha plot`.

The statistics run in a worker thread: Theil-Sen compares every two buckets (two million pairs
at the bucket bound) and must not stall the server's other requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from mahavishnu.akosha import analytics
from mahavishnu.akosha.analytics_views import (
    AnomalyReport,
    AnomalySeries,
    AnomalyView,
    ChangeReport,
    ChangeSeries,
    ChangeView,
    CorrelationPair,
    CorrelationReport,
    FrameView,
    TrendReport,
    TrendSeries,
)
from mahavishnu.akosha.series import Frame, Grid, MetricRegistry, Store, grid
from mahavishnu.platform import InvalidArgumentError, Principal

__all__ = ["MAX_LAG", "MAX_PAIRS", "Analyst", "Query"]

MAX_LAG = 168
"""Buckets one series may be shifted against another (a week of hours)."""
MAX_PAIRS = 50
"""Correlated pairs in one answer, strongest first."""
DAY = timedelta(days=1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    metric: str
    by: str = "none"
    window: str = "30d"
    bucket: str = "day"
    until: datetime | None = None

    def grid(self) -> Grid:
        return grid(self.window, self.bucket, self.until)


def _frame_fields(frame: Frame) -> dict[str, Any]:
    on = frame.grid
    return FrameView(
        metric=frame.metric,
        by=frame.by,
        bucket=on.label,
        bucket_seconds=int(on.step.total_seconds()),
        start=on.start,
        end=on.end,
        buckets=on.count,
        omitted=frame.omitted,
        counts=frame.counts,
    ).model_dump()


def _series_fields(key: str, values: npt.NDArray[np.float64]) -> dict[str, Any]:
    return {"key": key, "total": float(values.sum()), "values": values.tolist()}


def _trend(key: str, values: npt.NDArray[np.float64], on: Grid, confidence: float) -> TrendSeries:
    found = analytics.analyze_trend(values, confidence)
    direction = "rising" if found.low > 0 else "falling" if found.high < 0 else "flat"
    return TrendSeries(
        **_series_fields(key, values),
        slope=found.slope,
        slope_low=found.low,
        slope_high=found.high,
        confidence=confidence,
        intercept=found.intercept,
        slope_per_day=found.slope * (DAY / on.step),
        direction=direction,
    )


def _judged(frame: Frame, values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """What the detectors see, and the least noise they assume: counts on the Anscombe scale
    with Poisson's unit spread, other values as they are."""
    if frame.counts:
        return analytics.stabilize(values), analytics.STABLE_SIGMA
    return values, 0.0


def _anomalies(
    key: str, values: npt.NDArray[np.float64], frame: Frame, threshold: float, seasonal: bool
) -> AnomalySeries:
    period = frame.grid.season() if seasonal else None
    judged, least = _judged(frame, values)
    found, season = analytics.detect_anomalies(judged, threshold=threshold, period=period, min_scale=least)
    times = frame.grid.times()
    return AnomalySeries(
        **_series_fields(key, values),
        season=season,
        anomalies=[
            AnomalyView(
                index=a.index,
                at=times[a.index],
                value=float(values[a.index]),
                expected=analytics.unstabilize(a.expected) if frame.counts else a.expected,
                score=a.score,
            )
            for a in found
        ],
    )


def _changes(
    key: str, values: npt.NDArray[np.float64], frame: Frame, penalty: float | None, seasonal: bool
) -> ChangeSeries:
    period = frame.grid.season() if seasonal else None
    judged, least = _judged(frame, values)
    found = analytics.detect_changepoints(judged, penalty=penalty, period=period, min_sigma=least)
    means = analytics.segment_means(values, found.indices)
    times = frame.grid.times()
    return ChangeSeries(
        **_series_fields(key, values),
        changepoints=[
            ChangeView(index=k, at=times[k], before=means[n], after=means[n + 1])
            for n, k in enumerate(found.indices)
        ],
        season=found.season,
        sigma=found.sigma,
        penalty=found.penalty,
    )


def _pairs(a: Frame, b: Frame, max_lag: int) -> list[tuple[CorrelationPair, str, str]]:
    pairs = []
    for a_key, a_values in a.series.items():
        for b_key, b_values in b.series.items():
            if a.metric == b.metric and a_key >= b_key:
                continue  # one metric: each pair once, and no series against itself
            found = analytics.best_lag(a_values, b_values, max_lag)
            if found is not None:
                pair = CorrelationPair(
                    a=a_key,
                    b=b_key,
                    lag=found.lag,
                    r=found.r,
                    r_at_zero=found.r_at_zero,
                    overlap=found.overlap,
                    r_low=found.low,
                    r_high=found.high,
                )
                pairs.append((pair, a_key, b_key))
    pairs.sort(key=lambda item: (-abs(item[0].r), item[1], item[2]))
    return pairs[:MAX_PAIRS]


class Analyst:
    def __init__(self, store: Store, registry: MetricRegistry) -> None:
        self._store = store
        self._registry = registry

    async def _frame(self, principal: Principal, query: Query, on: Grid | None = None) -> Frame:
        on = on or query.grid()
        return await self._registry.frame(self._store, principal, query.metric, query.by, on)

    async def _judge(self, frame: Frame, judge: Callable[[str, npt.NDArray[np.float64]], T]) -> list[T]:
        return await asyncio.to_thread(lambda: [judge(key, values) for key, values in frame.series.items()])

    async def trends(self, principal: Principal, query: Query, *, confidence: float = 0.95) -> TrendReport:
        frame = await self._frame(principal, query)
        series = await self._judge(frame, lambda k, v: _trend(k, v, frame.grid, confidence))
        return TrendReport(**_frame_fields(frame), series=series)

    async def anomalies(
        self, principal: Principal, query: Query, *, threshold: float = 3.5, seasonal: bool = True
    ) -> AnomalyReport:
        frame = await self._frame(principal, query)
        series = await self._judge(frame, lambda k, v: _anomalies(k, v, frame, threshold, seasonal))
        return AnomalyReport(**_frame_fields(frame), threshold=threshold, series=series)

    async def changepoints(
        self, principal: Principal, query: Query, *, penalty: float | None = None, seasonal: bool = True
    ) -> ChangeReport:
        frame = await self._frame(principal, query)
        series = await self._judge(frame, lambda k, v: _changes(k, v, frame, penalty, seasonal))
        return ChangeReport(**_frame_fields(frame), series=series)

    async def correlate(
        self, principal: Principal, a: Query, b: Query, *, max_lag: int = 0
    ) -> CorrelationReport:
        """Every group of metric a against every group of metric b, on the same buckets (for
        one metric, each pair of groups once, in name order)."""
        self._registry.spec(a.metric, a.by, "metric_a")  # refused before anything is read
        self._registry.spec(b.metric, b.by, "metric_b")
        on = a.grid()
        most = min(MAX_LAG, on.count - analytics.MIN_POINTS)
        if not 0 <= max_lag <= most:
            raise InvalidArgumentError(f"max_lag: must be between 0 and {most} for {on.count} buckets")
        first = await self._frame(principal, a, on)
        second = await self._frame(principal, b, on)
        pairs = await asyncio.to_thread(_pairs, first, second, max_lag)
        best = pairs[0] if pairs else None
        return CorrelationReport(
            metric_a=a.metric,
            metric_b=b.metric,
            by=a.by,
            bucket=on.label,
            bucket_seconds=int(on.step.total_seconds()),
            start=on.start,
            end=on.end,
            buckets=on.count,
            max_lag=max_lag,
            pairs=[pair for pair, _, _ in pairs],
            a_values=first.series[best[1]].tolist() if best else [],
            b_values=second.series[best[2]].tolist() if best else [],
        )
