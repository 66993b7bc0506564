"""Logs, metrics and traces: configured once per process, used everywhere.

Logs are structlog JSON lines on stdout (twelve-factor). Metrics live in one
Prometheus registry per app so tests can build several apps in one process.
Traces go through the OpenTelemetry SDK and leave over OTLP only when an
endpoint is configured; the active trace id is stamped on every log line.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "Metrics",
    "configure_logging",
    "configure_tracing",
    "current_traceparent",
    "get_logger",
    "trace_context",
]

_SECRET_KEYS = frozenset({"authorization", "token", "secret", "password", "auth_secret", "access_token"})


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: a secret passed as a log field by mistake never reaches stdout."""
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "**********"
    return event


def _stamp_service(service: str) -> Any:
    """`service_name`, not `service`: lines about a peer (the service client's) use that key."""

    def stamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event["service_name"] = service
        return event

    return stamp


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: TextIO | None = None, *, service: str | None = None
) -> None:
    """Route structlog and the standard library (uvicorn, the MCP SDK) to one JSON stream.

    The stream is stdout for HTTP serving; stdio serving passes stderr, because
    there stdout carries the protocol. With `service`, every line carries `service_name=<name>`:
    several services log to one collector, and a line must say whose it is.
    """
    stream = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([_stamp_service(service)] if service else []),
        _add_trace_ids,
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK logs every stateless request's teardown at INFO; keep our stream to one line per request.
    for noisy in ("mcp", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str) -> Any:
    """A structlog logger whose lines carry `component=name` (bound lazily, safe at import time)."""
    return structlog.get_logger(component=name)


def configure_tracing(service_name: str, version: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install a tracer provider; export over OTLP/HTTP only when an endpoint is given."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": version})
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider


_PROPAGATOR = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The current span's W3C `traceparent`, to continue its trace later or elsewhere."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def trace_context(traceparent: str | None) -> Context:
    """A context whose parent is the given `traceparent`; without one, a new trace (not the
    caller's current span, which has nothing to do with a stored workflow)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()


@dataclass
class Metrics:
    """The platform's Prometheus metrics, registered in their own registry."""

    prefix: str = "mahavishnu"
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        p, r = self.prefix, self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.http_requests = Counter(
            f"{p}_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            f"{p}_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.tool_calls = Counter(
            f"{p}_mcp_tool_calls", "MCP tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.tool_duration = Histogram(
            f"{p}_mcp_tool_duration_seconds",
            "MCP tool latency.",
            ["tool"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
        )
        self.rate_limited = Counter(f"{p}_rate_limited", "Requests refused by the rate limiter.", registry=r)
        self.rate_limit_backend_errors = Counter(
            f"{p}_rate_limit_backend_errors",
            "Rate-limit backend failures, by the policy applied.",
            ["policy"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{p}_auth_failures", "Refused credentials by reason.", ["reason"], registry=r
        )
        self.up = Gauge(f"{p}_up", "1 while the service is serving.", registry=r)
