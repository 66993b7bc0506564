"""Akosha's metrics, registered in the platform's registry (`akosha_*`). Labels are bounded (an
outcome, a reason); never a source, a tenant or an id."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from mahavishnu.platform import Metrics

__all__ = ["IngestMetrics", "SearchMetrics"]


class IngestMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.records = Counter(
            "akosha_ingest_records",
            "Records received, by outcome (accepted: moved the store forward; unchanged: a replay "
            "or an older version).",
            ["outcome"],
            registry=r,
        )
        self.refused = Counter(
            "akosha_ingest_refused",
            "Ingest requests refused, by reason (auth, forbidden, rate_limited, too_large, "
            "malformed, invalid, unavailable, method, media_type, origin).",
            ["reason"],
            registry=r,
        )
        self.duration = Histogram(
            "akosha_ingest_duration_seconds",
            "Time to seal and store one batch, commit included.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


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
