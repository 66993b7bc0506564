"""Akosha's analytics tools: trends, anomalies, change points and correlations of the metrics in
a `MetricRegistry`, on the caller's sources only. Each answers its report as structured content
(and as JSON text for clients that read only text); with `chart=true` the chart rides along as
an MCP image (PNG, base64) in the same result.

The tools return a `CallToolResult` they build themselves, annotated with their report's model:
the SDK then publishes the report's schema as the output schema and checks the structured
content against it, and the image needs no change to the platform's pipeline.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import AwareDatetime, Field

from mahavishnu.akosha.analyst import MAX_LAG, Analyst, Query
from mahavishnu.akosha.analytics_views import AnomalyReport, ChangeReport, CorrelationReport, TrendReport
from mahavishnu.akosha.series import MAX_BUCKETS
from mahavishnu.platform import ToolSpec, current_principal

if TYPE_CHECKING:
    from mahavishnu.akosha.charts import Report

__all__ = ["AnalyticsTools"]

Metric = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="What to count per bucket: memories (made, by their created time), sessions "
        "(with a memory made in the bucket), or Mahavishnu's workflow_runs, workflow_failures, "
        "workflow_retries, workflow_duration (median seconds), by when each run finished.",
    ),
]
By = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="One series per: none (everything in your scope together), source, project "
        "(memories, sessions), repo or workflow (the workflow metrics).",
    ),
]
Window = Annotated[
    str,
    Field(
        pattern=r"^[1-9][0-9]{0,5}[mhdw]$",
        description="How far back from `until`: e.g. 48h, 30d, 12w (at most 366d).",
    ),
]
Bucket = Annotated[
    str,
    Field(
        pattern=r"^([1-9][0-9]{0,5}[mhdw]|hour|day|week)$",
        description=f"Bucket size: hour, day, week or e.g. 15m, 6h; at most {MAX_BUCKETS} buckets "
        "in the window. Buckets are aligned on UTC, so every system's buckets line up.",
    ),
]
Until = Annotated[
    AwareDatetime | None,
    Field(description="Where the window ends (default now); the last whole bucket before it counts."),
]
Chart = Annotated[bool, Field(description="Also return the chart as a PNG image.")]
Seasonal = Annotated[
    bool,
    Field(
        description="Judge each bucket against its own hour of day (sub-day buckets) or day of week "
        "(daily buckets), when the window holds four cycles or more."
    ),
]


async def _answer(report: Report, chart: bool) -> CallToolResult:
    content: list[TextContent | ImageContent] = [TextContent(type="text", text=report.model_dump_json())]
    if chart:
        from mahavishnu.akosha import charts  # matplotlib loads on the first chart, not at startup

        png = await asyncio.to_thread(charts.render, report)
        content.append(ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png"))
    return CallToolResult(content=content, structured_content=report.model_dump(mode="json"))


class AnalyticsTools:
    def __init__(self, analyst: Analyst) -> None:
        self._analyst = analyst

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.analyze_trends, title="Trend of a metric"),
            ToolSpec(self.detect_anomalies, title="Anomalies in a metric"),
            ToolSpec(self.detect_changepoints, title="Change points of a metric"),
            ToolSpec(self.correlate_systems, title="Correlate two metrics across systems"),
        ]

    async def analyze_trends(
        self,
        metric: Metric,
        window: Window = "30d",
        by: By = "none",
        bucket: Bucket = "day",
        until: Until = None,
        confidence: Annotated[float, Field(ge=0.5, le=0.999, description="Of the slope's interval.")] = 0.95,
        chart: Chart = False,
    ) -> Annotated[CallToolResult, TrendReport]:
        """Whether a metric rises or falls over the window, per series: the Theil-Sen slope (the
        median of the slopes between every two buckets; outliers barely move it) with its
        rank-based confidence interval, and the line's intercept. `direction` is rising or
        falling only when the whole interval is on one side of 0."""
        query = Query(metric, by, window, bucket, until)
        report = await self._analyst.trends(current_principal(), query, confidence=confidence)
        return await _answer(report, chart)

    async def detect_anomalies(
        self,
        metric: Metric,
        window: Window = "30d",
        by: By = "none",
        bucket: Bucket = "day",
        until: Until = None,
        threshold: Annotated[
            float, Field(ge=2, le=20, description="Robust |z| above which a bucket is an anomaly.")
        ] = 3.5,
        seasonal: Seasonal = True,
        chart: Chart = False,
    ) -> Annotated[CallToolResult, AnomalyReport]:
        """Buckets far from the usual, per series: robust z-scores (deviation from the median
        over 1.4826 MAD), seasonality-aware, so a daily peak is not an alarm but a spike is."""
        query = Query(metric, by, window, bucket, until)
        report = await self._analyst.anomalies(
            current_principal(), query, threshold=threshold, seasonal=seasonal
        )
        return await _answer(report, chart)

    async def detect_changepoints(
        self,
        metric: Metric,
        window: Window = "30d",
        by: By = "none",
        bucket: Bucket = "day",
        until: Until = None,
        penalty: Annotated[
            float | None,
            Field(ge=0.1, le=1000, description="Cost of one more change point; default 2 ln n (BIC)."),
        ] = None,
        seasonal: Seasonal = True,
        chart: Chart = False,
    ) -> Annotated[CallToolResult, ChangeReport]:
        """Where a metric's level shifted, per series (PELT, exact for a normal mean-change cost
        and the penalty): each change point's first bucket and the means before and after. The
        daily (or weekly) cycle is taken out first when the window holds four of them."""
        query = Query(metric, by, window, bucket, until)
        report = await self._analyst.changepoints(
            current_principal(), query, penalty=penalty, seasonal=seasonal
        )
        return await _answer(report, chart)

    async def correlate_systems(
        self,
        metric_a: Metric,
        metric_b: Metric,
        window: Window = "30d",
        by: By = "source",
        bucket: Bucket = "day",
        until: Until = None,
        max_lag: Annotated[
            int, Field(ge=0, le=MAX_LAG, description="Try shifting b by up to this many buckets.")
        ] = 0,
        chart: Chart = False,
    ) -> Annotated[CallToolResult, CorrelationReport]:
        """Whether two metrics move together across systems: Pearson's r of every series of
        metric_a against every series of metric_b on the same buckets, at the lag (b after a,
        up to max_lag) where |r| is largest; strongest pairs first. With one metric twice, each
        pair of groups once (a before b by name): does one system's activity follow another's?"""
        a = Query(metric_a, by, window, bucket, until)
        b = Query(metric_b, by, window, bucket, until)
        report = await self._analyst.correlate(current_principal(), a, b, max_lag=max_lag)
        return await _answer(report, chart)
