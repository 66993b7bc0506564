"""Each chart rendered from a real report of planted series, read back with Pillow: a valid PNG
of the figure's size, red where the anomalies are, the change-point colour along the boundaries
where the level shifts, the trend line where the report says it is; SVG for the plot command."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.dates import date2num
from matplotlib.figure import Figure
from PIL import Image

from mahavishnu.akosha import charts
from mahavishnu.akosha.analyst import Analyst, Query
from mahavishnu.akosha.series import Grid, MetricRegistry, MetricSpec, Store
from mahavishnu.platform import Principal

UNTIL = datetime(2026, 3, 10, tzinfo=UTC)
ADMIN = Principal(subject="admin", role="admin")
SPIKES = (30, 75)
SHIFTS = (40, 80)


def _planted(on: Grid) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    spiky = 20 + rng.normal(0, 1, on.count)
    spiky[list(SPIKES)] += 25
    levels = np.select([np.arange(on.count) < SHIFTS[0], np.arange(on.count) < SHIFTS[1]], [10.0, 30.0], 15.0)
    return {
        "spiky": spiky,
        "shifting": levels + rng.normal(0, 1, on.count),
        "rising": 5 + 0.4 * np.arange(on.count),
    }


async def _collect(store: Store, principal: Principal, on: Grid, by: str) -> dict[str, np.ndarray]:
    return _planted(on)


@pytest.fixture
def analyst() -> Analyst:
    registry = MetricRegistry([MetricSpec("planted", "Planted series.", ("series",), _collect, counts=False)])
    return Analyst(Store(None, None), registry)  # type: ignore[arg-type]  # the metric reads neither


QUERY = Query("planted", "series", "120d", "day", UNTIL)


def png_of(fig: Figure) -> Image.Image:
    data = charts.encode(fig, "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()  # a whole, valid PNG
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (round(fig.get_figwidth() * fig.dpi), round(fig.get_figheight() * fig.dpi))
    return image


def panel(fig: Figure, key: str) -> Axes:
    return next(ax for ax in fig.axes if ax.get_title(loc="left") == key)


def pixel(image: Image.Image, ax: Axes, at: np.datetime64, value: float) -> tuple[int, int, int]:
    """The colour where data point (at, value) landed (display origin is bottom-left)."""
    x, y = ax.transData.transform((date2num(at), value))
    rgb: tuple[int, int, int] = image.getpixel((round(x), image.height - round(y)))  # type: ignore[assignment]
    return rgb


def near(colour: tuple[int, int, int], hex_colour: str, tolerance: int = 40) -> bool:
    wanted = tuple(int(hex_colour[k : k + 2], 16) for k in (1, 3, 5))
    return all(abs(a - b) <= tolerance for a, b in zip(colour, wanted, strict=True))


def centre(report_start: datetime, bucket_seconds: int, index: int) -> np.datetime64:
    start = np.datetime64(int(report_start.timestamp()), "s")
    return start + np.timedelta64(bucket_seconds * index + bucket_seconds // 2, "s")


async def test_anomalies_are_red_where_they_were_planted_and_nowhere_else(analyst: Analyst) -> None:
    report = await analyst.anomalies(ADMIN, QUERY)
    spiky = next(s for s in report.series if s.key == "spiky")
    assert [a.index for a in spiky.anomalies] == list(SPIKES)
    fig = charts.figure(report)
    image, ax = png_of(fig), panel(fig, "spiky")
    for index in SPIKES:
        assert near(
            pixel(image, ax, centre(report.start, report.bucket_seconds, index), spiky.values[index]),
            "#ff0000",
        )
    quiet = 50
    assert not near(
        pixel(image, ax, centre(report.start, report.bucket_seconds, quiet), spiky.values[quiet]), "#ff0000"
    )
    reds = np.asarray(image)
    red = (reds[:, :, 0] > 220) & (reds[:, :, 1] < 60) & (reds[:, :, 2] < 60)
    marked = sum(len(s.anomalies) for s in report.series)
    assert 0 < red.sum() < marked * 200, "only the markers are red (a dot is ~100 pixels)"


async def test_change_points_are_vertical_lines_at_the_boundaries(analyst: Analyst) -> None:
    report = await analyst.changepoints(ADMIN, QUERY)
    shifting = next(s for s in report.series if s.key == "shifting")
    assert [c.index for c in shifting.changepoints] == list(SHIFTS)
    fig = charts.figure(report)
    image, ax = png_of(fig), panel(fig, "shifting")
    low, high = ax.get_ylim()
    start = np.datetime64(int(report.start.timestamp()), "s")
    for index in SHIFTS:
        boundary = start + np.timedelta64(report.bucket_seconds * index, "s")
        heights = [low + (high - low) * f for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
        on_line = [near(pixel(image, ax, boundary, h), "#7b2cbf") for h in heights]
        assert all(on_line), on_line
        between = start + np.timedelta64(report.bucket_seconds * (index - 5), "s")
        assert not near(pixel(image, ax, between, low + (high - low) * 0.9), "#7b2cbf")


async def test_the_trend_line_is_drawn_where_the_report_puts_it(analyst: Analyst) -> None:
    report = await analyst.trends(ADMIN, QUERY)
    rising = next(s for s in report.series if s.key == "rising")
    assert rising.slope == pytest.approx(0.4)
    fig = charts.figure(report)
    image, ax = png_of(fig), panel(fig, "rising")
    for index in (10, 60, 110):
        where = centre(report.start, report.bucket_seconds, index)
        assert near(pixel(image, ax, where, rising.intercept + rising.slope * index), "#ff7f0e")
    assert "rising" in ax.get_title(loc="right")


async def test_correlation_and_svg_render(analyst: Analyst) -> None:
    report = await analyst.correlate(ADMIN, QUERY, QUERY, max_lag=3)
    assert report.pairs
    png_of(charts.figure(report))
    svg = charts.render(report, "svg")
    assert svg.startswith(b"<?xml")
    assert svg.rstrip().endswith(b"</svg>")
    assert b"planted vs planted" in svg


async def test_an_empty_report_still_renders(analyst: Analyst) -> None:
    async def nothing(store: Store, principal: Principal, on: Grid, by: str) -> dict[str, np.ndarray]:
        return {}

    empty = Analyst(Store(None, None), MetricRegistry([MetricSpec("none", "Nothing.", ("x",), nothing)]))  # type: ignore[arg-type]
    report = await empty.anomalies(ADMIN, Query("none", "x", "10d", "day", UNTIL))
    assert report.series == []
    fig = charts.figure(report)
    png_of(fig)
    assert any("no data" in text.get_text() for text in fig.axes[0].texts)
