"""Akosha as a platform service: its factory, the shape `run_service` takes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.routing import Route

from mahavishnu.akosha.analyst import Analyst
from mahavishnu.akosha.analytics_tools import AnalyticsTools
from mahavishnu.akosha.cross_search import CrossSearch
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.ingest_gate import IngestGate
from mahavishnu.akosha.keys import key_ring
from mahavishnu.akosha.metrics import IngestMetrics, SearchMetrics, TierMetrics
from mahavishnu.akosha.outcome_inbox import OutcomeInbox
from mahavishnu.akosha.reads import Reader
from mahavishnu.akosha.record_index import RecordIndex, Tiering
from mahavishnu.akosha.route import INGEST_PATH, OUTCOMES_PATH, IngestEndpoint, Intake
from mahavishnu.akosha.search_tools import SearchTools
from mahavishnu.akosha.series import MEMORY_METRICS, MetricRegistry, Store
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.akosha.tiers import AgingPolicy
from mahavishnu.akosha.tools import AkoshaTools
from mahavishnu.akosha.wire import Batch, OutcomeBatch
from mahavishnu.akosha.workflow_series import WORKFLOW_METRICS
from mahavishnu.platform import ComponentHealth, Database, HealthCheck, Metrics, Service, get_logger
from mahavishnu.platform.background import in_background
from mahavishnu.platform.origin import HostOriginGuard
from mahavishnu.platform.search.embeddings import load_in_background

log = get_logger("akosha")

__all__ = ["INSTRUCTIONS", "create_service"]

INSTRUCTIONS = (
    "Akosha holds the memories every Session-Buddy pushes to it, one current version per memory "
    "and source, encrypted at rest. list_sources names the systems you may read and their counts; "
    "list_records pages through their records (by source and tenant); get_record reads one. "
    "analyze_trends, detect_anomalies, detect_changepoints and correlate_systems judge time series "
    "of what the systems report (memories, sessions; per source or project; and Mahavishnu's "
    "workflow_runs, workflow_failures, workflow_retries, workflow_duration per source, repo or "
    "workflow), with chart=true for a PNG chart. search_all_systems finds memories across every "
    "system you may read, by words and by meaning."
)


def create_service(settings: AkoshaSettings, metrics: Metrics) -> Service:
    db = Database.from_settings(settings, create=True)  # serving owns the data: may make the file
    ring = key_ring(settings)  # before serving: a bad key is a refusal to start, not a 5xx later
    ingest_metrics = IngestMetrics(metrics)
    tiering = Tiering(
        settings.effective_cold_dir,
        AgingPolicy(hot_days=settings.hot_days, warm_days=settings.warm_days),
        aging_seconds=settings.aging_seconds,
    )
    tier_metrics = TierMetrics(metrics)
    index = RecordIndex(db, ring, tiering, on_aged=tier_metrics.aged)
    tier_metrics.watch(index.tier_sizes)
    search_metrics = SearchMetrics(
        metrics, indexed=lambda: len(index.entries), unembedded=lambda: index.unembedded
    )
    inbox = Inbox(
        db,
        ring,
        ingest_metrics,
        max_records=settings.max_batch_records,
        on_stored=index.note,
        vectors=index.vector_store,
    )
    outcomes = OutcomeInbox(db, ingest_metrics, max_records=settings.max_batch_records)
    routes = _ingest_routes(
        settings,
        IngestGate.from_settings(settings, metrics),
        ingest_metrics,
        Intake(INGEST_PATH, Batch, lambda batch: inbox.take(batch.source, batch.records)),
        Intake(OUTCOMES_PATH, OutcomeBatch, outcomes.take),
    )

    async def database() -> ComponentHealth:
        return ComponentHealth("ok" if await db.ping() else "degraded")

    async def search_index() -> ComponentHealth:
        return ComponentHealth("ok" if index.ready and index.embedder is not None else "degraded")

    @contextlib.asynccontextmanager
    async def background() -> AsyncIterator[None]:
        try:
            async with in_background(index.run()), in_background(_understand(settings, index)):
                yield
        finally:
            await db.dispose()

    return Service(
        name=settings.service_name,
        version=_version(),
        instructions=INSTRUCTIONS,
        settings=settings,
        tools=[
            *AkoshaTools(inbox, Reader(db, ring, on_read=index.seen)).specs(),
            *SearchTools(CrossSearch(db, ring, index, search_metrics)).specs(),
            *AnalyticsTools(
                Analyst(Store(db, ring), MetricRegistry((*MEMORY_METRICS, *WORKFLOW_METRICS)))
            ).specs(),
        ],
        health_checks=[
            HealthCheck("database", database, critical=True),
            HealthCheck("search_index", search_index, critical=False),
        ],
        background=background,
        routes=routes,
    )


def _ingest_routes(
    settings: AkoshaSettings, gate: IngestGate, metrics: IngestMetrics, *intakes: Intake[Any]
) -> list[Route]:
    """One route per intake, each behind the same gate, guard and body limits."""
    guard = None
    if settings.dns_rebinding_protection:
        guard = HostOriginGuard.with_loopback(settings.allowed_hosts, settings.allowed_origins)
    return [
        Route(
            intake.path,
            endpoint=IngestEndpoint(
                gate,
                intake,
                metrics,
                guard=guard,
                max_body_bytes=settings.max_body_bytes,
                max_json_depth=settings.max_json_depth,
            ),
        )
        for intake in intakes
    ]


async def _understand(settings: AkoshaSettings, index: RecordIndex) -> None:
    """Search by meaning once the model is loaded; until then, and without it, by keyword."""
    embedder = await load_in_background(settings.embedding_model, cache=settings.effective_model_cache_dir)
    if embedder is not None:
        index.use_embedder(embedder)


def _version() -> str:
    from mahavishnu import __version__

    return __version__
