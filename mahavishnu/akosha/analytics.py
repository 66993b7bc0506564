"""Statistics on bucketed series, in numpy alone: robust trend, anomalies, change points, lagged
correlation. Each function takes plain arrays (one value per bucket, evenly spaced) and knows
nothing of metrics or storage, so it is tested on synthetic series with planted answers.

Robust by choice: counts from many systems have bursts and dead hours, and a mean or a least
squares line follows them; medians do not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_CYCLES",
    "MIN_POINTS",
    "STABLE_SIGMA",
    "Anomaly",
    "Changepoints",
    "Correlation",
    "Trend",
    "analyze_trend",
    "best_lag",
    "detect_anomalies",
    "detect_changepoints",
    "robust_sigma",
    "segment_means",
    "stabilize",
    "unstabilize",
]

Values = npt.ArrayLike
MIN_POINTS = 3
"""Fewest buckets any analysis answers on."""
MIN_CYCLES = 4
"""Whole cycles a seasonal baseline needs (each bucket is judged against its phase in the others)."""
_MAD_TO_SIGMA = 1.4826
"""MAD times this estimates a normal distribution's standard deviation."""
_MEAN_AD_TO_SIGMA = 1.2533
"""Mean absolute deviation times this does, when half the values are equal and MAD is 0."""


def _as_array(values: Values) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < MIN_POINTS:
        raise ValueError(f"need a 1-d series of at least {MIN_POINTS} values")
    if not np.all(np.isfinite(array)):
        raise ValueError("values must be finite")
    return array


def stabilize(counts: Values) -> npt.NDArray[np.float64]:
    """Counts on the Anscombe scale, 2 sqrt(x + 3/8): Poisson noise there has unit variance at
    every level, so a busy hour's ordinary spread is not an alarm beside a quiet hour's."""
    stable: npt.NDArray[np.float64] = 2 * np.sqrt(np.asarray(counts, dtype=np.float64) + 3 / 8)
    return stable


STABLE_SIGMA = 1.0
"""Poisson noise on the Anscombe scale: the least spread counts are judged with, so a series
quieter than chance (a clean step, a constant with one blip) is not read as all signal."""


def unstabilize(value: float) -> float:
    """A count from the Anscombe scale (the algebraic inverse)."""
    return max((value / 2) ** 2 - 3 / 8, 0.0)


@dataclass(frozen=True, slots=True)
class Trend:
    slope: float
    """Per bucket: the median of the slopes between every two buckets (Theil-Sen)."""
    low: float
    high: float
    """The slope's confidence interval (Sen 1968, rank-based: distribution-free)."""
    intercept: float
    """The line's value at bucket 0: median(y) - slope * median(x)."""
    confidence: float


def analyze_trend(values: Values, confidence: float = 0.95) -> Trend:
    """Theil-Sen: up to 29% of the buckets may be arbitrary without moving the slope much."""
    y = _as_array(values)
    if not 0.5 <= confidence < 1:
        raise ValueError("confidence must be in [0.5, 1)")
    n = y.size
    x = np.arange(n, dtype=np.float64)
    i, j = np.triu_indices(n, k=1)
    slopes = (y[j] - y[i]) / (x[j] - x[i])
    count = slopes.size
    # Var(S) of Kendall's S under no trend, less the ties in y (x has none: one per bucket).
    _, tied = np.unique(y, return_counts=True)
    variance = (n * (n - 1) * (2 * n + 5) - float(np.sum(tied * (tied - 1) * (2 * tied + 5)))) / 18
    spread = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    lower = max(round((count - spread) / 2) - 1, 0)
    upper = min(round((count + spread) / 2), count - 1)
    middle = ((count - 1) // 2, count // 2)
    ranked = np.partition(slopes, sorted({lower, upper, *middle}))  # the order statistics needed, O(n)
    slope = float((ranked[middle[0]] + ranked[middle[1]]) / 2)
    intercept = float(np.median(y) - slope * np.median(x))
    return Trend(slope, float(ranked[lower]), float(ranked[upper]), intercept, confidence)


def robust_sigma(values: npt.NDArray[np.float64]) -> float:
    """A normal scale of `values` from their median absolute deviation; from the mean absolute
    deviation when more than half are equal (sparse counts: mostly zeros); 0 if all are equal."""
    deviations = np.abs(values - np.median(values))
    mad = float(np.median(deviations))
    if mad > 0:
        return mad * _MAD_TO_SIGMA
    return float(np.mean(deviations)) * _MEAN_AD_TO_SIGMA


@dataclass(frozen=True, slots=True)
class Anomaly:
    index: int
    value: float
    expected: float
    """What the bucket would be without the anomaly: the series' median, or with a season the
    median of its phase in the other cycles (plus the residuals' median)."""
    score: float
    """Robust z: (value - expected) over the robust scale of the residuals."""


def _seasonal_baseline(
    y: npt.NDArray[np.float64], period: int | None
) -> tuple[npt.NDArray[np.float64], int | None]:
    """Each bucket's baseline: the median of its phase in the other cycles, where there are at
    least `MIN_CYCLES` cycles (else no season). Leaving the bucket out keeps its own value from
    pulling its baseline (with few cycles, the median's own bucket would score exactly 0 and
    shrink the scale); three others keep one spike from moving its phase-mates' baselines."""
    if period is None or period < 2 or y.size < MIN_CYCLES * period:
        return np.full(y.size, np.median(y)), None
    baseline = np.empty_like(y)
    for p in range(period):
        baseline[p::period] = _medians_of_the_others(y[p::period])
    return baseline, period


def _medians_of_the_others(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """For each value, the median of all the others (from one sort)."""
    s = np.sort(v)
    rank = np.empty(v.size, dtype=np.int64)
    rank[np.argsort(v, kind="stable")] = np.arange(v.size)
    others = v.size - 1

    def nth_of_others(k: int) -> npt.NDArray[np.float64]:
        picked: npt.NDArray[np.float64] = np.where(k < rank, s[k], s[min(k + 1, v.size - 1)])
        return picked

    return (nth_of_others((others - 1) // 2) + nth_of_others(others // 2)) / 2


def detect_anomalies(
    values: Values, *, threshold: float = 3.5, period: int | None = None, min_scale: float = 0.0
) -> tuple[list[Anomaly], int | None]:
    """Buckets whose robust z-score exceeds `threshold` (3.5: Iglewicz and Hoaglin's advice for
    the modified z-score), and the season used. With a `period` (24 hourly or 7 daily buckets)
    and at least four cycles, each bucket is judged against the median of the buckets one,
    two, ... periods away, so a daily peak is the norm, not an alarm. The scale is at least
    `min_scale` (`STABLE_SIGMA` for stabilized counts)."""
    y = _as_array(values)
    expected, season = _seasonal_baseline(y, period)
    residuals = y - expected
    centre = float(np.median(residuals))
    scale = max(robust_sigma(residuals), min_scale)
    if scale == 0:
        return [], season
    scores = (residuals - centre) / scale
    flagged = np.flatnonzero(np.abs(scores) > threshold)
    return [
        Anomaly(int(k), float(y[k]), float(expected[k] + centre), float(scores[k])) for k in flagged
    ], season


@dataclass(frozen=True, slots=True)
class Changepoints:
    indices: list[int]
    """Where each new segment begins (a bucket index, 1 to n-1)."""
    means: list[float]
    """Each segment's mean, one more than `indices`."""
    sigma: float
    """The noise scale the cost used (robust, from the differences of neighbours)."""
    penalty: float
    season: int | None
    """The cycle taken out first, if any."""


def _noise_sigma(y: npt.NDArray[np.float64]) -> float:
    """The noise scale, blind to level shifts: neighbours' differences change only at a shift,
    so their robust scale over sqrt(2) is the noise's; their plain spread if that is 0."""
    differences = np.diff(y)
    sigma = robust_sigma(differences) / math.sqrt(2)
    return sigma if sigma > 0 else float(np.std(differences)) / math.sqrt(2)


def detect_changepoints(
    values: Values,
    *,
    penalty: float | None = None,
    period: int | None = None,
    min_sigma: float = 0.0,
    min_size: int = 2,
) -> Changepoints:
    """Shifts of the mean, by PELT (Killick, Fearnhead and Eckley 2012): the exact minimum of
    the segments' normal costs (squared deviations over sigma squared) plus `penalty` per change
    point, default 2 ln n (BIC: a mean and a location per change). Pruning keeps the search near
    linear: a start that cannot win now never wins later, as splitting never raises this cost.
    With a `period` and four cycles, the seasonal baseline is taken out first: a busy afternoon
    every day is a cycle, not two change points a day. The noise scale is at least `min_sigma`
    (`STABLE_SIGMA` for stabilized counts)."""
    y = _as_array(values)
    n = y.size
    beta = 2 * math.log(n) if penalty is None else penalty
    baseline, season = _seasonal_baseline(y, period)
    shifts = y - baseline if season is not None else y
    sigma = max(_noise_sigma(shifts), min_sigma)
    if sigma <= 1e-9 * max(1.0, float(np.max(np.abs(y)))):  # no noise (a line, rounding aside)
        return Changepoints([], [float(y.mean())], 0.0, beta, season)
    indices = _pelt(shifts / sigma, beta, min_size)
    return Changepoints(indices, segment_means(y, indices), sigma, beta, season)


def segment_means(values: Values, indices: Sequence[int]) -> list[float]:
    """The mean of each segment `indices` (each a segment's first bucket) cut `values` into."""
    y = np.asarray(values, dtype=np.float64)
    bounds = [0, *indices, y.size]
    return [float(y[a:b].mean()) for a, b in itertools.pairwise(bounds)]


def _pelt(z: npt.NDArray[np.float64], beta: float, min_size: int) -> list[int]:
    """The optimal change points of `z` (unit noise) for penalty `beta`."""
    n = z.size
    first = np.concatenate(([0.0], np.cumsum(z)))
    second = np.concatenate(([0.0], np.cumsum(z * z)))

    def cost(starts: npt.NDArray[np.int64], end: int) -> npt.NDArray[np.float64]:
        sums = first[end] - first[starts]
        result: npt.NDArray[np.float64] = second[end] - second[starts] - sums * sums / (end - starts)
        return result

    best = np.full(n + 1, np.inf)
    best[0] = -beta
    previous = np.zeros(n + 1, dtype=np.int64)
    candidates = np.array([0], dtype=np.int64)
    for end in range(min_size, n + 1):
        eligible = candidates[end - candidates >= min_size]
        totals = best[eligible] + cost(eligible, end) + beta
        winner = int(np.argmin(totals))
        best[end], previous[end] = totals[winner], eligible[winner]
        keep = best[candidates] + cost(candidates, end) <= best[end]
        keep |= end - candidates < min_size  # too young to judge yet
        candidates = np.append(candidates[keep], end - min_size + 1)
    indices: list[int] = []
    end = n
    while end > 0:
        end = int(previous[end])
        if end > 0:
            indices.append(end)
    indices.reverse()
    return indices


@dataclass(frozen=True, slots=True)
class Correlation:
    lag: int
    """Buckets b trails a by at the best |r| (negative: b leads)."""
    r: float
    r_at_zero: float | None
    overlap: int
    """Bucket pairs behind r at that lag."""
    low: float
    high: float
    """r's 95% interval by Fisher's z (for one lag; the best of many is a little optimistic)."""


def _pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / norm if norm > 0 else None


def _lagged(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], lag: int) -> float | None:
    """Pearson's r between a[t] and b[t + lag] over the buckets both have."""
    n = a.size
    if lag >= 0:
        return _pearson(a[: n - lag], b[lag:])
    return _pearson(a[-lag:], b[: n + lag])


def best_lag(a_values: Values, b_values: Values, max_lag: int = 0) -> Correlation | None:
    """The lag in [-max_lag, max_lag] where a and b correlate most strongly (either sign); None
    when either is constant at every lag. Ties go to the smallest |lag|."""
    a, b = _as_array(a_values), _as_array(b_values)
    if a.size != b.size:
        raise ValueError("series must be aligned (the same buckets)")
    if not 0 <= max_lag <= a.size - MIN_POINTS:
        raise ValueError(f"max_lag must be between 0 and {a.size - MIN_POINTS} for {a.size} buckets")
    found: tuple[int, float] | None = None
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        r = _lagged(a, b, lag)
        if r is not None and (found is None or abs(r) > abs(found[1]) + 1e-12):
            found = (lag, r)
    if found is None:
        return None
    lag, r = found
    overlap = a.size - abs(lag)
    low, high = _fisher_interval(r, overlap)
    return Correlation(lag, r, _lagged(a, b, 0), overlap, low, high)


def _fisher_interval(r: float, n: int) -> tuple[float, float]:
    if n <= 3:
        return -1.0, 1.0
    if abs(r) >= 1 - 1e-12:  # a perfect line: no doubt left (atanh is infinite there)
        return r, r
    centre = math.atanh(r)
    half = NormalDist().inv_cdf(0.975) / math.sqrt(n - 3)
    return math.tanh(centre - half), math.tanh(centre + half)
