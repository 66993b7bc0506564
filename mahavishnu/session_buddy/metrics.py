"""Session-Buddy's metrics, registered in the platform's registry (`session_buddy_*`). Labels are
bounded (a search mode, an outcome); never a tenant, a user, an id or a word of a memory."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mahavishnu.platform.observability import Metrics

__all__ = ["MemoryMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class MemoryMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.stored = Counter(
            "session_buddy_memories_stored",
            "store_memory calls answered, by outcome (created, or existing: an idempotent repeat).",
            ["outcome"],
            registry=r,
        )
        self.searches = Counter("session_buddy_searches", "Searches answered, by mode.", ["mode"], registry=r)
        self.search_duration = Histogram(
            "session_buddy_search_duration_seconds",
            "Search latency by mode (query embedding, ranking and decrypting the hits).",
            ["mode"],
            registry=r,
            buckets=_LATENCY,
        )
        self.embedding_duration = Histogram(
            "session_buddy_embedding_duration_seconds",
            "Time to embed one batch of memories (or one query).",
            ["what"],
            registry=r,
            buckets=_LATENCY,
        )
        self.embedded = Counter(
            "session_buddy_memories_embedded", "Memory versions embedded in the background.", registry=r
        )
        self.embedding_queue = Gauge(
            "session_buddy_embedding_queue_depth",
            "Memory versions waiting to be embedded (as of the last background pass).",
            registry=r,
        )
        self.outbox_lag = Gauge(
            "session_buddy_outbox_lag",
            "Outbox entries not yet accepted by Akosha.",
            registry=r,
        )
        self.outbox_oldest_seconds = Gauge(
            "session_buddy_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry not yet accepted by Akosha (0 when none waits).",
            registry=r,
        )
        self.outbox_pushed = Counter(
            "session_buddy_outbox_pushed", "Outbox entries accepted by Akosha.", registry=r
        )
        self.outbox_failures = Counter(
            "session_buddy_outbox_push_failures",
            "Pushes to Akosha that failed (each is retried with backoff; nothing is dropped).",
            registry=r,
        )
        self.rotation_remaining = Gauge(
            "session_buddy_rotation_remaining",
            "Sealed records still under an older key while a key rotation runs (0 when none).",
            registry=r,
        )
        self.rotation_rewrapped = Counter(
            "session_buddy_rotation_rewrapped",
            "Sealed records re-wrapped under the newest key by key rotation.",
            registry=r,
        )
