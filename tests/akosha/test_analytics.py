"""The statistics on synthetic series with planted answers: lines, outliers, shifts, spikes,
daily peaks, lagged copies; and pure noise, which should raise few alarms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mahavishnu.akosha.analytics import analyze_trend, best_lag, detect_anomalies, detect_changepoints

finite = st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False)


@given(slope=finite, intercept=finite, n=st.integers(min_value=3, max_value=200))
def test_theil_sen_recovers_an_exact_line(slope: float, intercept: float, n: int) -> None:
    found = analyze_trend(intercept + slope * np.arange(n))
    assert found.slope == pytest.approx(slope, rel=1e-9, abs=1e-9)
    assert found.intercept == pytest.approx(intercept, rel=1e-9, abs=1e-6)
    assert found.low == pytest.approx(slope, rel=1e-9, abs=1e-9)
    assert found.high == pytest.approx(slope, rel=1e-9, abs=1e-9)


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    where=st.integers(0, 59),
    outlier=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_one_outlier_barely_moves_the_slope(seed: int, where: int, outlier: float) -> None:
    rng = np.random.default_rng(seed)
    clean = 5 + 0.7 * np.arange(60) + rng.normal(0, 1, 60)
    dirty = clean.copy()
    dirty[where] = outlier
    before, after = analyze_trend(clean), analyze_trend(dirty)
    assert abs(after.slope - before.slope) < 0.05  # least squares would move by up to ~5,000
    assert after.low <= 0.7 <= after.high or abs(after.slope - 0.7) < 0.05


def test_the_slopes_interval_covers_the_true_slope_about_as_often_as_it_says() -> None:
    covered = 0
    for seed in range(200):
        y = 2 - 0.3 * np.arange(40) + np.random.default_rng(seed).normal(0, 2, 40)
        found = analyze_trend(y, confidence=0.9)
        covered += found.low <= -0.3 <= found.high
        assert found.low <= found.slope <= found.high
    assert 0.84 <= covered / 200 <= 0.97


def test_a_rank_interval_widens_with_the_noise_and_with_the_confidence() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, 50)
    line = np.arange(50.0)
    quiet, loud = analyze_trend(line + noise), analyze_trend(line + 10 * noise)
    assert quiet.high - quiet.low < loud.high - loud.low
    wide = analyze_trend(line + noise, confidence=0.99)
    assert wide.low <= quiet.low
    assert wide.high >= quiet.high


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, float("nan"), 2.0], [[1.0, 2.0, 3.0]]])
def test_too_short_or_not_finite_is_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"at least 3|finite"):
        analyze_trend(bad)


def _planted_shifts(rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """3 to 4 segments of 15 to 50 buckets, each mean 3 to 8 noise units from the last."""
    lengths = rng.integers(15, 51, size=int(rng.integers(3, 5)))
    level, pieces, changes = 0.0, [], []
    for index, length in enumerate(lengths):
        if index:
            changes.append(sum(len(p) for p in pieces))
            level += float(rng.choice([-1, 1]) * rng.uniform(3, 8))
        pieces.append(level + rng.normal(0, 1, int(length)))
    return np.concatenate(pieces), changes


def test_pelt_finds_planted_shifts_within_a_bucket() -> None:
    found_right = planted = reported = 0
    for seed in range(100):
        values, changes = _planted_shifts(np.random.default_rng(seed))
        found = detect_changepoints(values).indices
        hits = [c for c in changes if any(abs(c - f) <= 1 for f in found)]
        found_right += sum(any(abs(c - f) <= 1 for c in changes) for f in found)
        planted += len(changes)
        reported += len(found)
        assert len(found) == len(set(found))
        assert found == sorted(found)
        assert len(hits) >= len(changes) - 1, (seed, changes, found)
    assert found_right / reported >= 0.9, "precision"
    assert found_right / planted >= 0.9, "recall"


@given(
    before=st.integers(10, 60),
    after=st.integers(10, 60),
    shift=st.floats(min_value=4, max_value=50),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60)
def test_pelt_places_one_shift_and_reports_each_segments_mean(
    before: int, after: int, shift: float, seed: int
) -> None:
    noise = np.random.default_rng(seed).normal(0, 1, before + after)
    values = np.concatenate([np.zeros(before), np.full(after, shift)]) + noise
    found = detect_changepoints(values)
    assert any(abs(k - before) <= 1 for k in found.indices), found
    bounds = [0, *found.indices, values.size]
    assert found.means == pytest.approx([values[a:b].mean() for a, b in itertools.pairwise(bounds)])


def test_pelt_is_quiet_on_noise_and_on_a_constant() -> None:
    alarms = sum(
        len(detect_changepoints(np.random.default_rng(s).normal(7, 2, 300)).indices) for s in range(100)
    )
    assert alarms <= 10, "at most one false change point per ten series of 300 buckets"
    assert detect_changepoints(np.full(50, 4.0)).indices == []
    assert detect_changepoints(0.1 * np.arange(50)).indices == [], "a noiseless line has no level to shift"
    assert detect_changepoints(np.r_[np.zeros(20), np.full(20, 9.0)]).indices == [20]
    fewer = detect_changepoints(np.random.default_rng(1).normal(0, 1, 200), penalty=1.0).indices
    assert len(fewer) >= len(detect_changepoints(np.random.default_rng(1).normal(0, 1, 200)).indices)


def _daily(days: int, rng: np.random.Generator) -> np.ndarray:
    """Hourly counts with a busy noon (60 against 20), noise of a few counts."""
    hours = np.arange(days * 24)
    return 20 + 40 * (hours % 24 == 12) + rng.normal(0, 2, hours.size)


def test_a_planted_spike_is_flagged_and_the_daily_peak_is_not() -> None:
    values = _daily(14, np.random.default_rng(5))
    values[100] += 30  # 04:00 on day 5: nothing like its hour
    found, season = detect_anomalies(values, period=24)
    assert season == 24
    assert [a.index for a in found] == [100]
    assert found[0].expected == pytest.approx(20, abs=2)
    assert found[0].score > 3.5
    naive, none = detect_anomalies(values)
    assert none is None
    assert {k for k in range(12, values.size, 24)} <= {a.index for a in naive}, (
        "without the season every noon alarms"
    )


def test_the_season_needs_four_cycles_and_the_right_period() -> None:
    values = _daily(14, np.random.default_rng(6))[5:]  # starting at 05:00 changes nothing
    assert detect_anomalies(values, period=24) == ([], 24)
    assert len(detect_anomalies(values, period=23)[0]) >= 10  # the wrong cycle sees each noon as odd
    assert detect_anomalies(values[: 24 * 3], period=24)[1] is None
    one_spike = np.tile([2.0] * 24, 4)
    one_spike[50] = 12
    assert [a.index for a in detect_anomalies(one_spike, period=24)[0]] == [50], "its phase-mates stay calm"


def test_spikes_are_found_with_high_precision_and_recall_and_noise_is_quiet() -> None:
    planted = hits = flagged = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        values = _daily(21, rng)
        spikes = rng.choice(values.size, size=4, replace=False)
        values[spikes] += rng.choice([-1, 1], size=4) * rng.uniform(15, 30, size=4)
        found = {a.index for a in detect_anomalies(values, period=24)[0]}
        planted, hits, flagged = planted + 4, hits + len(found & set(spikes)), flagged + len(found)
    assert hits / planted >= 0.9
    assert hits / flagged >= 0.9
    quiet = sum(len(detect_anomalies(_daily(21, np.random.default_rng(s)), period=24)[0]) for s in range(50))
    assert quiet / (50 * 21 * 24) <= 0.002, "|z| > 3.5 on normal noise: 0.05% expected"


def test_sparse_counts_use_the_mean_deviation_and_a_constant_has_no_anomaly() -> None:
    values = np.zeros(60)
    values[[5, 20]] = 1
    values[40] = 25  # MAD is 0 (most buckets are empty): the mean deviation scales instead
    assert [a.index for a in detect_anomalies(values)[0]] == [40]
    assert detect_anomalies(np.full(30, 3.0))[0] == []


@given(lag=st.integers(-6, 6), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40)
def test_best_lag_finds_a_shifted_copy(lag: int, seed: int) -> None:
    base = np.random.default_rng(seed).normal(0, 1, 120)
    a, b = base[10:110], np.roll(base, lag)[10:110]  # b[t] = base[t - lag]: b follows a by lag
    found = best_lag(a, b, max_lag=8)
    assert found is not None
    assert found.lag == lag
    assert found.r == pytest.approx(1)
    assert found.overlap == 100 - abs(lag)
    assert found.low <= found.r <= found.high


def test_correlation_sign_constant_series_and_bounds() -> None:
    x = np.arange(20.0)
    found = best_lag(x, -2 * x + 1)
    assert found is not None
    assert found.r == pytest.approx(-1)
    assert found.r_at_zero == pytest.approx(-1)
    assert best_lag(x, np.ones(20), max_lag=3) is None
    with pytest.raises(ValueError, match="max_lag"):
        best_lag(x, x, max_lag=18)
    with pytest.raises(ValueError, match="aligned"):
        best_lag(x, x[:-1])
