"""Echo as a platform service: its factory."""

from __future__ import annotations

from prometheus_client import Counter

from mahavishnu.platform import ComponentHealth, Database, HealthCheck, Metrics, Service
from tests.support.echo_service.settings import EchoSettings
from tests.support.echo_service.tools import EchoTools


def create_service(settings: EchoSettings, metrics: Metrics) -> Service:
    db = Database.from_settings(settings)
    echoed = Counter(f"{settings.metric_prefix}_messages", "Texts echoed.", registry=metrics.registry)

    async def database() -> ComponentHealth:
        return ComponentHealth("ok" if await db.ping() else "degraded")

    return Service(
        name=settings.service_name,
        version="1.0.0",
        instructions="Echo stores a text and says it back.",
        settings=settings,
        tools=EchoTools(db, settings.greeting, echoed).specs(),
        health_checks=[HealthCheck("database", database)],
    )
