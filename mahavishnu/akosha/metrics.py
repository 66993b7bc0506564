"""Akosha's metrics, registered in the platform's registry (`akosha_*`). Labels are bounded (an
outcome, a reason, a tier); never a tenant or an id. A source is a label of the per-source lag
gauges only, and only the first `MAX_SOURCE_LABELS` sources get their own (the rest share
"other"): sources are the systems an operator gave the ingest token, a handful, but a label
set must not grow with whatever name a sender makes up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from mahavishnu.akosha.tiers import TIERS, Tier
from mahavishnu.platform import Metrics

__all__ = ["MAX_SOURCE_LABELS", "IngestMetrics", "SearchMetrics", "TierMetrics"]

MAX_SOURCE_LABELS = 100


class IngestMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.records = Counter(
            "akosha_ingest_records",
            "Records received, by kind (memory: a memory or tombstone; outcome: a workflow run) and "
            "outcome (accepted: moved the store forward; unchanged: a replay or an older version).",
            ["kind", "outcome"],
            registry=r,
        )
        self.refused = Counter(
            "akosha_ingest_refused",
            "Ingest requests refused, by reason (auth, forbidden, rate_limited, too_large, "
            "malformed, invalid, unavailable, method, media_type, origin).",
            ["reason"],
            registry=r,
        )
        self._lag = Gauge(
            "akosha_source_lag_seconds",
            "At a source's last batch: how long before it arrived the newest record in it was "
            "written at the source (how far behind the sender is, at least).",
            ["source"],
            registry=r,
        )
        self._last = Gauge(
            "akosha_source_last_ingest_timestamp_seconds",
            "When a batch from the source last arrived (Unix time).",
            ["source"],
            registry=r,
        )
        self._labelled: set[str] = set()
        self.duration = Histogram(
            "akosha_ingest_duration_seconds",
            "Time to seal and store one batch, commit included.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def arrived(self, source: str, newest_written: datetime | None) -> None:
        """A batch from `source` was stored; `newest_written`: its newest record's update time."""
        if source not in self._labelled and len(self._labelled) >= MAX_SOURCE_LABELS:
            source = "other"
        self._labelled.add(source)
        now = datetime.now(UTC)
        self._last.labels(source).set(now.timestamp())
        if newest_written is not None:
            self._lag.labels(source).set(max(0.0, (now - newest_written).total_seconds()))


class SearchMetrics:
    """How `search_all_systems` does: its latency by mode, and the size of what it ranks."""

    def __init__(
        self, metrics: Metrics, *, indexed: Callable[[], int], unembedded: Callable[[], int]
    ) -> None:
        r = metrics.registry
        self.duration = Histogram(
            "akosha_search_duration_seconds",
            "Time to answer one search, by mode (ranking, reading back and opening the hits).",
            ["mode"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        Gauge("akosha_index_records", "Live records in the search index.", registry=r).set_function(indexed)
        Gauge(
            "akosha_index_unembedded",
            "Records in the index still waiting for their vector (found by keyword meanwhile).",
            registry=r,
        ).set_function(unembedded)


class TierMetrics:
    """The vectors each tier holds, and what the aging runs moved."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self._sizes = Gauge(
            "akosha_index_vectors",
            "Vectors in the search index, by tier (hot, warm, cold).",
            ["tier"],
            registry=r,
        )
        self.runs = Counter("akosha_aging_runs", "Aging runs finished.", registry=r)
        self.moves = Counter(
            "akosha_tier_moves",
            "Vectors an aging run moved, by the tier they moved to.",
            ["tier"],
            registry=r,
        )

    def watch(self, sizes: Callable[[], Mapping[Tier, int]]) -> None:
        for tier in TIERS:
            self._sizes.labels(tier).set_function(_size_of(sizes, tier))

    def aged(self, moved: Mapping[Tier, int]) -> None:
        self.runs.inc()
        for tier, count in moved.items():
            self.moves.labels(tier).inc(count)


def _size_of(sizes: Callable[[], Mapping[Tier, int]], tier: Tier) -> Callable[[], float]:
    return lambda: sizes().get(tier, 0)
