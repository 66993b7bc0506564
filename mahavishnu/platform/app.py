"""The platform's app factory: a service in, one ASGI app out.

A `Service` is what a product (Mahavishnu, later Session-Buddy and Akosha)
contributes: its tools, resources, health checks, background jobs and any HTTP
routes of its own. `build_app` wraps it in the shared pipeline and serves `/mcp`,
`/health`, `/ready`, `/metrics` and the OAuth protected-resource metadata.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerMiddleware
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from mahavishnu.platform.auth import ROLES, TokenVerifier
from mahavishnu.platform.client_logging import LogLevels
from mahavishnu.platform.errors import AuthenticationError, PlatformError
from mahavishnu.platform.health import ComponentHealth, HealthCheck, HealthReport, HealthState, evaluate
from mahavishnu.platform.http import HostOriginGuard, McpGate, RequestObserver, bearer_token
from mahavishnu.platform.mcp import ResourceSpec, ToolSpec, build_mcp_server
from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.ratelimit import ClientAddressResolver, RateLimiter
from mahavishnu.platform.settings import PlatformSettings

__all__ = ["Platform", "Service", "build_app", "build_mcp", "build_stdio", "extend_service"]

log = get_logger("mahavishnu.app")
METADATA_PATH = "/.well-known/oauth-protected-resource"


@dataclass
class Service:
    """What a product hands the platform."""

    name: str
    version: str
    instructions: str
    settings: PlatformSettings
    tools: Sequence[ToolSpec]
    resources: Sequence[ResourceSpec] = ()
    health_checks: Sequence[HealthCheck] = ()
    background: Callable[[], AbstractAsyncContextManager[None]] | None = None
    """Started before the first request and stopped after the last (file watchers, workers)."""
    mcp_middleware: Sequence[ServerMiddleware[Any]] = ()
    configure_mcp: Callable[[MCPServer], None] | None = None
    """For what the platform has no declaration of; what it registers bypasses the pipeline."""
    routes: Sequence[BaseRoute] = ()
    """HTTP routes beside `/mcp`, after the platform's own (which win a clash). They get the
    request id, span, access log and metrics under their own route label, but not `McpGate`:
    authentication, rate limits and body limits are theirs to apply."""


def extend_service(
    service: Service,
    *,
    tools: Sequence[ToolSpec] = (),
    background: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> Service:
    """`service` plus tools and a background job contributed from outside it.

    The composition root uses it to add what a service must not import (ops: backups) without
    the service knowing. The extra job runs inside the service's own, so it starts after and
    stops before whatever the service's job owns (its database, say)."""
    if background is None:
        return replace(service, tools=[*service.tools, *tools])
    inner, outer = background, service.background

    @contextlib.asynccontextmanager
    async def both() -> AsyncIterator[None]:
        async with _maybe(outer), inner():
            yield

    return replace(service, tools=[*service.tools, *tools], background=both)


@dataclass
class Platform:
    """The built app and the parts tests and the server runner need to reach."""

    app: ASGIApp
    mcp: MCPServer
    metrics: Metrics
    health: HealthState = field(default_factory=HealthState)
    failures: list[str] = field(default_factory=list)
    """Why the lifespan's start-up failed, when it did (one line each), for the runner to say."""

    @property
    def startup_failure(self) -> str | None:
        return self.failures[0] if self.failures else None


def build_mcp(
    service: Service,
    metrics: Metrics,
    state: HealthState,
    checks: Sequence[HealthCheck],
    log_levels: LogLevels | None = None,
) -> MCPServer:
    """The SDK server with the service's tools and resources plus the platform's own `get_health`."""
    return build_mcp_server(
        name=service.name,
        version=service.version,
        instructions=service.instructions,
        tools=[*service.tools, _health_tool(service, checks, state)],
        metrics=metrics,
        resources=service.resources,
        middleware=service.mcp_middleware,
        configure=service.configure_mcp,
        log_levels=log_levels,
    )


def _host_origin_guard(settings: PlatformSettings) -> HostOriginGuard | None:
    if not settings.dns_rebinding_protection:
        return None
    return HostOriginGuard.with_loopback(settings.allowed_hosts, settings.allowed_origins)


def build_app(service: Service, metrics: Metrics) -> Platform:
    """The service behind the platform's pipeline: `/mcp` through `McpGate`, the health, readiness,
    metrics and OAuth metadata routes, and a lifespan that runs the service's background job."""
    settings = service.settings
    limiter = RateLimiter.from_settings(settings, metrics)
    state = HealthState()
    checks = list(service.health_checks)
    if limiter is not None:
        checks.append(HealthCheck("rate_limit", _limiter_probe(limiter)))
    log_levels = LogLevels()
    server = build_mcp(service, metrics, state, checks, log_levels)
    json_manager, streaming_manager = _transports(server, settings)
    verifier = TokenVerifier.from_settings(settings)
    gate = McpGate(
        StreamableHTTPASGIApp(json_manager),
        streaming_app=StreamableHTTPASGIApp(streaming_manager),
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        guard=_host_origin_guard(settings),
        verifier=verifier,
        limiter=limiter,
        tool_roles={spec.name: spec.min_role for spec in service.tools if spec.min_role != "viewer"},
        log_levels=log_levels,
        metrics=metrics,
        resource_metadata_url=settings.resource_url + METADATA_PATH,
    )
    failures: list[str] = []
    lifespan = _lifespan(service, metrics, state, failures, json_manager.run, streaming_manager.run)
    routes = [
        Route("/mcp", endpoint=gate),
        *_platform_routes(service, metrics, state, checks, verifier),
        *service.routes,
    ]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    addresses = ClientAddressResolver(settings.trusted_proxies)
    observed = RequestObserver(starlette, metrics=metrics, addresses=addresses)
    return Platform(app=observed, mcp=server, metrics=metrics, health=state, failures=failures)


def _transports(
    server: MCPServer, settings: PlatformSettings
) -> tuple[StreamableHTTPSessionManager, StreamableHTTPSessionManager]:
    """Two stateless transports over one server: JSON answers by default, and an SSE stream for
    a request that carries a progress token, so its progress notifications can reach the client.
    The gate checks Host/Origin (before auth and rate limits); the SDK need not check again."""
    checked_by_gate = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    managers = []
    for json_response in (True, False):
        server.streamable_http_app(
            stateless_http=True,
            json_response=json_response,
            max_request_body_size=settings.max_body_bytes,
            transport_security=checked_by_gate,
        )
        managers.append(server.session_manager)
    return managers[0], managers[1]


def _platform_routes(
    service: Service,
    metrics: Metrics,
    state: HealthState,
    checks: Sequence[HealthCheck],
    verifier: TokenVerifier | None,
) -> list[BaseRoute]:
    """`/health`, `/ready`, `/metrics` and the OAuth protected-resource metadata (RFC 9728)."""
    settings = service.settings

    async def health(request: Request) -> Response:
        report = await evaluate(checks, state)
        if settings.health_details_public or _may_see_details(request, verifier):
            body = _health_body(service, report, state)
        else:
            body = report.summary()
        return JSONResponse(body, status_code=report.http_status)

    async def ready(_: Request) -> Response:
        report = await evaluate([c for c in checks if c.critical], state)
        ok = report.status != "unhealthy"
        return JSONResponse({"status": "ready" if ok else "not_ready"}, status_code=200 if ok else 503)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def resource_metadata(_: Request) -> Response:
        return JSONResponse(
            {
                "resource": settings.resource_url + "/mcp",
                "authorization_servers": [],
                "bearer_methods_supported": ["header"],
                "scopes_supported": list(ROLES),
                "resource_name": service.name,
            }
        )

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route(METADATA_PATH, resource_metadata, methods=["GET"]),
        Route(METADATA_PATH + "/mcp", resource_metadata, methods=["GET"]),
    ]


def _lifespan(
    service: Service,
    metrics: Metrics,
    state: HealthState,
    failures: list[str],
    *transports: Callable[[], AbstractAsyncContextManager[None]],
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start the transports and the service's background job before the first request, stop them
    after the last. A start-up step that fails is written down in `failures` (one line) before
    the error goes on to uvicorn, which ends the start; the runner then says why."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                for transport in transports:
                    await stack.enter_async_context(transport())
                await stack.enter_async_context(_maybe(service.background))
            except Exception as exc:
                failures.append(_one_line(exc))
                log.error("service_start_failed", service=service.name, problem=failures[-1])
                raise
            # Everything loaded so far (modules, settings, the manifest) lives as long as the
            # process: keep it out of the cyclic collector's full passes, which would otherwise
            # walk it again and again under request load.
            gc.freeze()
            metrics.up.set(1)
            log.info("service_started", service=service.name, version=service.version)
            try:
                yield
            finally:
                state.draining = True
                metrics.up.set(0)
                log.info("service_stopping", service=service.name)

    return lifespan


def _one_line(exc: BaseException) -> str:
    """A platform error's message as is; anything else as its type and first line."""
    if isinstance(exc, PlatformError):
        return exc.message
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def build_stdio(service: Service, metrics: Metrics) -> MCPServer:
    """The SDK server for stdio: same tools and checks, no HTTP pipeline (the spawner is trusted)."""
    return build_mcp(service, metrics, HealthState(), service.health_checks)


def _health_body(service: Service, report: HealthReport, state: HealthState) -> dict[str, Any]:
    return report.as_dict(
        service=service.name, version=service.version, uptime_seconds=time.time() - state.started_at
    )


def _may_see_details(request: Request, verifier: TokenVerifier | None) -> bool:
    """Component details name paths, backends and problems: with auth on, a valid token (any
    role) sees them; probes without one get the status of each component only."""
    if verifier is None:
        return True
    try:
        verifier.verify(bearer_token(request.scope))
    except AuthenticationError:
        return False
    return True


def _health_tool(service: Service, checks: Sequence[HealthCheck], state: HealthState) -> ToolSpec:
    async def get_health() -> dict[str, Any]:
        """Report this server's health: overall status (healthy, degraded or unhealthy), version,
        uptime, and the result of each component check (manifest, rate limiting, database...)."""
        return _health_body(service, await evaluate(checks, state), state)

    return ToolSpec(get_health, title="Service health")


def _limiter_probe(limiter: RateLimiter) -> Callable[[], Any]:
    async def probe() -> ComponentHealth:
        if await limiter.healthy():
            return ComponentHealth("ok", data={"backend": limiter.backend})
        return ComponentHealth(
            "degraded", "rate-limit backend unreachable", data={"backend": limiter.backend}
        )

    return probe


@contextlib.asynccontextmanager
async def _maybe(factory: Callable[[], AbstractAsyncContextManager[None]] | None) -> AsyncIterator[None]:
    if factory is None:
        yield
        return
    async with factory():
        yield
