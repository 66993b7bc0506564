"""Running a service: `run_service` from settings class to a serving process, over uvicorn
(HTTP, graceful stop on SIGTERM) or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import FrameType
from typing import Any, TypeVar

import anyio
import uvicorn
from mcp.server import MCPServer

from mahavishnu.platform.app import Platform, Service, build_app, build_stdio
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.health import HealthState
from mahavishnu.platform.observability import Metrics, configure_logging, configure_tracing, get_logger
from mahavishnu.platform.settings import PlatformSettings

__all__ = ["SCHEMA_CHECK_SECONDS", "check_schema", "run_service", "serve_http", "serve_stdio"]

S = TypeVar("S", bound=PlatformSettings)
SCHEMA_CHECK_SECONDS = 15.0
log = get_logger("mahavishnu.server")


def run_service(
    settings_cls: type[S],
    factory: Callable[[S, Metrics], Service],
    *,
    version: str,
    overrides: Mapping[str, Any] | None = None,
    stdio: bool = False,
) -> None:
    """Load a service's settings, refuse what must not start, and serve it until stopped.

    Everything that names the service follows from its settings class: the variables read, the
    port, the metric prefix, the `service_name` of every log line and the traces' `service.name`.
    A reason not to start (bad or insecure settings, a schema this code cannot use) is raised as a
    ConfigurationError whose message is one line for the operator; the caller prints it.
    """
    settings = settings_cls.load(**(overrides or {}))
    stream = sys.stderr if stdio else sys.stdout  # over stdio, stdout carries the protocol
    configure_logging(settings.log_level, settings.log_format, stream=stream, service=settings.service_name)
    settings.ensure_secure(listening=not stdio)
    for warning in settings.insecure_warnings(listening=not stdio):
        log.warning("insecure_configuration", problem=warning)
    check_schema(settings)
    tracer_provider = configure_tracing(settings.service_name, version, settings.otel_exporter_otlp_endpoint)
    metrics = Metrics(prefix=settings.metric_prefix)
    try:
        service = factory(settings, metrics)
        if stdio:
            serve_stdio(build_stdio(service, metrics), service.background)
        else:
            serve_http(build_app(service, metrics), settings)
    finally:
        tracer_provider.shutdown()  # flush spans still queued for the OTLP exporter


def check_schema(settings: PlatformSettings) -> None:
    """Refuse a schema this version cannot use before the server starts (ConfigurationError).

    An unreachable database does not stop the start: it is logged, the service starts degraded
    and its own start-up keeps trying.
    """
    if settings.migrations is None:
        return

    async def check() -> None:
        db = Database.from_settings(settings)
        try:
            await asyncio.wait_for(db.ensure_schema(upgrade=settings.db_auto_upgrade), SCHEMA_CHECK_SECONDS)
        finally:
            await db.dispose()

    try:
        asyncio.run(check())
    except ConfigurationError:
        raise
    except Exception as exc:
        log.warning("database_unreachable_at_start", error=type(exc).__name__, detail=str(exc)[:200])


class _DrainingServer(uvicorn.Server):
    """Flags the service as draining the moment a stop signal arrives, so /ready turns 503
    while uvicorn finishes the requests already in flight."""

    def __init__(self, config: uvicorn.Config, health: HealthState) -> None:
        super().__init__(config)
        self._health = health

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM as uvicorn does, but do not re-raise them afterwards:
        a graceful stop that finished its in-flight requests exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._health.draining:
            log.info("shutdown_requested", signal=sig)
        self._health.draining = True
        super().handle_exit(sig, frame)


def serve_http(platform: Platform, settings: PlatformSettings) -> None:
    config = uvicorn.Config(
        platform.app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is judged by our own trusted-proxy list, not uvicorn's
        lifespan="on",
        timeout_graceful_shutdown=round(settings.shutdown_grace_seconds),
    )
    log.info("listening", url=f"http://{settings.host}:{settings.port}/mcp", auth=settings.auth_enabled)
    _DrainingServer(config, platform.health).run()


def serve_stdio(
    server: MCPServer, background: Callable[[], AbstractAsyncContextManager[None]] | None
) -> None:
    """Serve one desktop client over stdin/stdout, with the service's background jobs running."""

    async def main() -> None:
        async with background() if background is not None else contextlib.nullcontext():
            await server.run_stdio_async()

    anyio.run(main)
