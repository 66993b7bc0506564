"""Session-Buddy as a platform service: its factory, the shape `run_service` takes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mahavishnu.platform import (
    ComponentHealth,
    Database,
    HealthCheck,
    Metrics,
    Service,
    UnavailableError,
    get_logger,
)
from mahavishnu.platform.background import in_background
from mahavishnu.platform.search.embeddings import load_in_background
from mahavishnu.session_buddy.admin_tools import AdminTools
from mahavishnu.session_buddy.exchange import Exchange
from mahavishnu.session_buddy.exchange_tools import ExchangeTools
from mahavishnu.session_buddy.keywords import Keywords
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Limits, Memories
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.pusher import push_to_akosha
from mahavishnu.session_buddy.retention import purge
from mahavishnu.session_buddy.rotator import Rotator
from mahavishnu.session_buddy.session_tools import SessionTools
from mahavishnu.session_buddy.sessions import SessionLimits, Sessions
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.tools import MemoryTools
from mahavishnu.session_buddy.vault import Vault, key_ring, open_vault

__all__ = ["create_service"]

log = get_logger("session_buddy")

INSTRUCTIONS = (
    "Session-Buddy keeps what you learn across coding sessions, encrypted and private to your "
    "tenant. start_session at the start (it hands you the last session's hand-off note), "
    "checkpoint as you go, end_session with a hand-off for the next one. store_memory for "
    "decisions, facts, fixes and preferences (with tags and a project); search_memories to find "
    "them again by words, identifiers or paths; update_memory keeps history; delete_memory "
    "forgets; export_memories and import_memories move a tenant's memories as signed JSONL."
)


def create_service(settings: SessionBuddySettings, metrics: Metrics) -> Service:
    db = Database.from_settings(settings, create=True)  # serving owns the data: may make the file
    ring = key_ring(settings)  # before serving: a bad key is a refusal to start, not a 5xx later
    limits = Limits(max_content_chars=settings.max_content_chars, max_tags=settings.max_tags)
    session_limits = SessionLimits(max_text_chars=settings.max_content_chars)
    opened: list[Vault] = []
    meaning: list[Meaning] = []  # once the model is loaded (in the background, off the loop)
    memory_metrics = MemoryMetrics(metrics)
    rotator = Rotator(db, ring, memory_metrics)
    keywords = Keywords(db)  # keyword ranking in process once rebuilt; SQL ranks until then

    def vault_now() -> Vault:
        if not opened:
            raise UnavailableError("the memory store is still opening; try again shortly")
        return opened[0]

    def meaning_now() -> Meaning | None:
        return meaning[0] if meaning else None

    def memories_for(tenant: str, author: str) -> Memories:
        return Memories(
            db, vault_now(), limits, tenant=tenant, author=author, meaning=meaning_now(), keywords=keywords
        )

    def exchange_for(tenant: str, author: str) -> Exchange:
        return Exchange(
            db, vault_now(), limits, tenant=tenant, author=author, meaning=meaning_now(), keywords=keywords
        )

    def sessions_for(tenant: str, author: str) -> Sessions:
        return Sessions(db, vault_now(), session_limits, tenant=tenant, author=author)

    async def database() -> ComponentHealth:
        return ComponentHealth("ok" if await db.ping() else "degraded")

    async def vault() -> ComponentHealth:
        return ComponentHealth("ok" if opened else "degraded")

    async def search_by_meaning() -> ComponentHealth:
        return ComponentHealth("ok" if meaning and meaning[0].ready else "degraded")

    @contextlib.asynccontextmanager
    async def background() -> AsyncIterator[None]:
        try:
            opened.append(await open_vault(db, ring))
            await rotator.start_if_needed()
            async with (
                in_background(_retain(db, settings)),
                in_background(keywords.run()),
                in_background(_understand(db, opened[0], settings, memory_metrics, meaning)),
                in_background(push_to_akosha(db, opened[0], settings, memory_metrics)),
            ):
                yield
        finally:
            await rotator.stop()
            await db.dispose()

    return Service(
        name=settings.service_name,
        version=_version(),
        instructions=INSTRUCTIONS,
        settings=settings,
        tools=[
            *SessionTools(sessions_for).specs(),
            *MemoryTools(memories_for, memory_metrics).specs(),
            *ExchangeTools(exchange_for).specs(),
            *AdminTools(db, vault_now, rotator, purge_after_days=settings.purge_after_days).specs(),
        ],
        health_checks=[
            HealthCheck("database", database, critical=True),
            HealthCheck("vault", vault, critical=True),
            HealthCheck("search_by_meaning", search_by_meaning, critical=False),
        ],
        background=background,
    )


async def _retain(db: Database, settings: SessionBuddySettings) -> None:
    """Retention on a timer; a failed run is logged and tried again at the next tick."""
    while True:
        await asyncio.sleep(settings.retention_interval_seconds)
        try:
            report = await purge(db, purge_after_days=settings.purge_after_days)
        except Exception as exc:  # an outage must not end the loop
            log.warning("retention_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if report.expired or report.deleted or report.aged:
            log.info("retention_purged", **report.model_dump())


async def _understand(
    db: Database,
    vault: Vault,
    settings: SessionBuddySettings,
    metrics: MemoryMetrics,
    into: list[Meaning],
) -> None:
    """Load the embedding model (in a thread), rebuild the index, then embed in the background;
    without the model, keyword search goes on and the health check says what is missing."""
    embedder = await load_in_background(settings.embedding_model, cache=settings.effective_model_cache_dir)
    if embedder is None:
        return
    into.append(Meaning(db, embedder, workers=settings.worker_count, metrics=metrics))
    await into[0].run(vault)


def _version() -> str:
    from mahavishnu import __version__

    return __version__
