"""What the analytics tools answer: the series they judged, bucket by bucket, and the numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "AnomalyReport",
    "AnomalySeries",
    "AnomalyView",
    "ChangeReport",
    "ChangeSeries",
    "ChangeView",
    "CorrelationPair",
    "CorrelationReport",
    "FrameView",
    "SeriesView",
    "TrendReport",
    "TrendSeries",
]


class FrameView(BaseModel):
    metric: str
    by: str = Field(description="What the series are grouped by: none, source, project, ...")
    bucket: str = Field(description="The bucket size, e.g. 1h or 1d.")
    bucket_seconds: int
    start: datetime = Field(description="Where the first bucket begins (UTC, aligned on the epoch).")
    end: datetime = Field(description="Where the last bucket ends: the last whole bucket before `until`.")
    buckets: int
    omitted: int = Field(description="Smaller groups left out (at most 20 series are analysed).")
    counts: bool = Field(
        description="The values are counts: anomalies and change points are judged on the Anscombe "
        "scale (2 sqrt(x + 3/8)), where a busy bucket's ordinary spread is no alarm."
    )


class SeriesView(BaseModel):
    key: str = Field(description="The group: a source, a project, or 'all'.")
    total: float
    values: list[float] = Field(description="One value per bucket from `start`; an empty bucket is 0.")


class TrendSeries(SeriesView):
    slope: float = Field(description="Change per bucket (Theil-Sen: the median of pairwise slopes).")
    slope_low: float
    slope_high: float
    confidence: float = Field(description="Of the slope's interval (rank-based, Sen 1968).")
    intercept: float = Field(description="The trend line's value at the first bucket.")
    slope_per_day: float
    direction: Literal["rising", "falling", "flat"] = Field(
        description="rising or falling when the whole interval is above or below 0."
    )


class TrendReport(FrameView):
    series: list[TrendSeries]


class AnomalyView(BaseModel):
    index: int
    at: datetime = Field(description="The bucket's start.")
    value: float
    expected: float = Field(
        description="The median, plus the bucket's seasonal offset when a season is used."
    )
    score: float = Field(
        description="Robust z-score: the deviation over 1.4826 MAD of the residuals (on the Anscombe "
        "scale for counts)."
    )


class AnomalySeries(SeriesView):
    season: int | None = Field(description="Buckets per cycle judged against (24 hours, 7 days), or null.")
    anomalies: list[AnomalyView]


class AnomalyReport(FrameView):
    threshold: float
    series: list[AnomalySeries]


class ChangeView(BaseModel):
    index: int = Field(description="The first bucket of the new level.")
    at: datetime
    before: float = Field(description="Mean of the segment before.")
    after: float = Field(description="Mean of the segment from here.")


class ChangeSeries(SeriesView):
    changepoints: list[ChangeView]
    season: int | None = Field(description="The cycle taken out before looking for shifts, or null.")
    sigma: float = Field(
        description="The noise scale the cost used (robust, from neighbours' differences; on the "
        "Anscombe scale for counts)."
    )
    penalty: float = Field(description="Cost of one more change point (default 2 ln n, the BIC).")


class ChangeReport(FrameView):
    series: list[ChangeSeries]


class CorrelationPair(BaseModel):
    a: str = Field(description="metric_a's group.")
    b: str = Field(description="metric_b's group.")
    lag: int = Field(description="Buckets b follows a by at the strongest r (negative: b leads).")
    r: float = Field(description="Pearson's r at that lag.")
    r_at_zero: float | None = Field(description="Pearson's r on the same buckets; null if constant.")
    overlap: int = Field(description="Bucket pairs behind r.")
    r_low: float
    r_high: float = Field(description="r's 95% interval (Fisher's z; optimistic after picking a lag).")


class CorrelationReport(BaseModel):
    metric_a: str
    metric_b: str
    by: str
    bucket: str
    bucket_seconds: int
    start: datetime
    end: datetime
    buckets: int
    max_lag: int
    pairs: list[CorrelationPair] = Field(
        description="Strongest |r| first; pairs with a constant series left out."
    )
    a_values: list[float] = Field(description="The first pair's series of metric_a (empty without a pair).")
    b_values: list[float] = Field(description="The first pair's series of metric_b.")
