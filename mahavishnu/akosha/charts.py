"""Charts of the analytics reports (matplotlib, no display): one panel per series, the values
as a line, the trend line with its interval, anomalies as red dots, change points as vertical
lines at the boundary where the new level begins.

Figures are built with matplotlib's object API (no pyplot: no global figure list, nothing to
close) and rendered one at a time under a lock, as matplotlib's font and text caches are shared.
A value is drawn at the middle of its bucket, so a change point's line falls between the last
bucket of the old level and the first of the new one.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # never a display, whatever the environment says

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from mahavishnu.akosha.analytics_views import (
    AnomalyReport,
    ChangeReport,
    CorrelationReport,
    FrameView,
    SeriesView,
    TrendReport,
)

__all__ = [
    "ANOMALY_COLOUR",
    "CHANGE_COLOUR",
    "FORMATS",
    "MAX_PANELS",
    "Format",
    "Report",
    "encode",
    "figure",
    "render",
]

Format = Literal["png", "svg"]
FORMATS: tuple[Format, ...] = ("png", "svg")
Report = TrendReport | AnomalyReport | ChangeReport | CorrelationReport
MAX_PANELS = 6
"""Series drawn in one chart (the report holds them all)."""
SERIES_COLOUR = "#1f77b4"
TREND_COLOUR = "#ff7f0e"
ANOMALY_COLOUR = "#ff0000"
CHANGE_COLOUR = "#7b2cbf"
LEVEL_COLOUR = "#2ca02c"
PANEL_INCHES = (10.0, 2.8)
DPI = 100

_render_lock = threading.Lock()


Times = npt.NDArray[np.datetime64]


def _boundaries(view: FrameView | CorrelationReport, indices: npt.ArrayLike) -> Times:
    """Where buckets `indices` begin (UTC, as numpy datetimes: matplotlib's date axis takes them)."""
    start = np.datetime64(int(view.start.timestamp()), "s")
    step = np.timedelta64(view.bucket_seconds, "s")
    times: Times = start + np.asarray(indices, dtype=np.int64) * step
    return times


def _centres(view: FrameView | CorrelationReport, count: int) -> Times:
    return _boundaries(view, np.arange(count)) + np.timedelta64(view.bucket_seconds, "s") / 2


def _many(count: int, one: str, more: str) -> str:
    return f"{count} {one if count == 1 else more}"


def _panels(count: int, title: str) -> tuple[Figure, list[Axes]]:
    shown = max(1, min(count, MAX_PANELS))
    fig = Figure(figsize=(PANEL_INCHES[0], PANEL_INCHES[1] * shown + 0.4), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(shown, 1, sharex=True, squeeze=False)[:, 0])
    more = f" (first {MAX_PANELS} of {count} series)" if count > MAX_PANELS else ""
    fig.suptitle(title + more)
    if count == 0:
        axes[0].text(0.5, 0.5, "no data in scope for this window", ha="center", transform=axes[0].transAxes)
    for ax in axes:
        locator = AutoDateLocator()  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.grid(True, alpha=0.3)
    return fig, axes


def _draw_series(ax: Axes, report: FrameView, series: SeriesView) -> Times:
    times = _centres(report, len(series.values))
    ax.plot(times, series.values, color=SERIES_COLOUR, linewidth=1.4, marker=".", markersize=3, zorder=2)
    ax.set_title(series.key, loc="left", fontsize=10)
    ax.set_ylabel(report.metric)
    return times


def _trend(report: TrendReport) -> Figure:
    fig, axes = _panels(len(report.series), f"{report.metric} by {report.by}: trend (Theil-Sen)")
    for ax, series in zip(axes, report.series, strict=False):
        times = _draw_series(ax, report, series)
        x = range(len(series.values))
        line = [series.intercept + series.slope * k for k in x]
        ax.plot(times, line, color=TREND_COLOUR, linestyle="--", linewidth=2, zorder=3)
        middle = (len(series.values) - 1) / 2  # the interval's slopes pivot on the middle bucket
        low = [line[k] + (series.slope_low - series.slope) * (k - middle) for k in x]
        high = [line[k] + (series.slope_high - series.slope) * (k - middle) for k in x]
        ax.fill_between(times, low, high, color=TREND_COLOUR, alpha=0.15, linewidth=0)
        per_day = 86400 / report.bucket_seconds  # buckets a day
        ax.set_title(
            f"{series.direction}: {series.slope_per_day:+.3g}/day, {series.confidence:.0%} interval "
            f"[{series.slope_low * per_day:+.3g}, {series.slope_high * per_day:+.3g}]",
            loc="right",
            fontsize=9,
        )
    return fig


def _anomalies(report: AnomalyReport) -> Figure:
    fig, axes = _panels(
        len(report.series), f"{report.metric} by {report.by}: anomalies (|z| > {report.threshold:g})"
    )
    for ax, series in zip(axes, report.series, strict=False):
        times = _draw_series(ax, report, series)
        found = series.anomalies
        ax.scatter(
            times[[a.index for a in found]],
            [a.value for a in found],
            s=80,
            color=ANOMALY_COLOUR,
            edgecolors=ANOMALY_COLOUR,
            zorder=4,
        )
        season = f", season {series.season}" if series.season else ""
        ax.set_title(f"{_many(len(found), 'anomaly', 'anomalies')}{season}", loc="right", fontsize=9)
    return fig


def _changepoints(report: ChangeReport) -> Figure:
    fig, axes = _panels(len(report.series), f"{report.metric} by {report.by}: change points (PELT)")
    for ax, series in zip(axes, report.series, strict=False):
        _draw_series(ax, report, series)
        n = len(series.values)
        bounds = [0, *(c.index for c in series.changepoints), n]
        means = [series.changepoints[0].before] if series.changepoints else [series.total / max(n, 1)]
        means += [c.after for c in series.changepoints]
        for (a, b), mean in zip(itertools.pairwise(bounds), means, strict=True):
            ax.plot(_boundaries(report, [a, b]), [mean, mean], color=LEVEL_COLOUR, linewidth=1.5)
        ax.vlines(
            _boundaries(report, [c.index for c in series.changepoints]),
            0,
            1,
            transform=ax.get_xaxis_transform(),  # from the bottom of the panel to its top
            color=CHANGE_COLOUR,
            linewidth=2,
            zorder=5,  # over the series: the jump it marks would otherwise hide it
        )
        season = f", cycle of {series.season} taken out" if series.season else ""
        found = _many(len(series.changepoints), "change point", "change points")
        ax.set_title(f"{found}{season}", loc="right", fontsize=9)
    return fig


def _correlation(report: CorrelationReport) -> Figure:
    title = f"{report.metric_a} vs {report.metric_b} by {report.by}: strongest pair"
    fig, axes = _panels(1 if report.pairs else 0, title)
    if not report.pairs:
        return fig
    best, ax = report.pairs[0], axes[0]
    times = _centres(report, len(report.a_values))
    ax.plot(times, report.a_values, color=SERIES_COLOUR, linewidth=1.4, label=f"{report.metric_a}: {best.a}")
    ax.set_ylabel(report.metric_a, color=SERIES_COLOUR)
    other = ax.twinx()
    other.plot(
        times, report.b_values, color=TREND_COLOUR, linewidth=1.4, label=f"{report.metric_b}: {best.b}"
    )
    other.set_ylabel(report.metric_b, color=TREND_COLOUR)
    ax.set_title(f"{best.a} vs {best.b}", loc="left", fontsize=10)
    ax.set_title(f"r = {best.r:+.2f} at lag {best.lag} (b after a)", loc="right", fontsize=9)
    return fig


_FIGURES: dict[type[Report], Callable[..., Figure]] = {
    TrendReport: _trend,
    AnomalyReport: _anomalies,
    ChangeReport: _changepoints,
    CorrelationReport: _correlation,
}


def figure(report: Report) -> Figure:
    """The report's chart as a figure (a test maps data to pixels with its axes' transforms)."""
    return _FIGURES[type(report)](report)


def encode(fig: Figure, fmt: Format = "png") -> bytes:
    """The figure as PNG or SVG bytes, at its own size and resolution (no tight cropping, so
    its axes' transforms say where each point landed)."""
    buffer = io.BytesIO()
    with _render_lock:
        fig.savefig(buffer, format=fmt, dpi=fig.dpi)
    return buffer.getvalue()


def render(report: Report, fmt: Format = "png") -> bytes:
    with _render_lock:
        fig = figure(report)
    return encode(fig, fmt)
