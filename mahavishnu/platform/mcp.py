"""Turning a service's declared tools into MCP tools wrapped in the platform pipeline.

A service declares `ToolSpec`s: plain async functions with typed arguments
and a docstring the model reads. The platform registers each one with the
SDK behind one wrapper that checks the role, annotates the SDK's span, times
it, counts the outcome, logs it (on the HTTP request's line, or on its own
line over stdio), and maps exceptions: a `MahavishnuError`
becomes a tool error result (or, for access failures, a JSON-RPC error) with
its stable code and safe message; anything else is logged with its traceback
and reaches the client as a generic internal error naming the request id.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerMiddleware
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from mahavishnu.platform.auth import Role, current_principal
from mahavishnu.platform.errors import MahavishnuError
from mahavishnu.platform.http import request_info
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["ToolSpec", "build_mcp_server"]

INTERNAL_ERROR = -32603
ERROR_META_KEY = "io.mahavishnu/error"
log = get_logger("mahavishnu.tools")

_OUTCOMES = {
    "InvalidArgumentError": "invalid",
    "NotFoundError": "not_found",
    "PermissionDeniedError": "denied",
    "RateLimitedError": "rate_limited",
    "UnavailableError": "unavailable",
}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as a service declares it; the platform decides how it runs."""

    fn: Callable[..., Awaitable[Any]]
    min_role: Role = "viewer"
    read_only: bool = True
    title: str | None = None

    @property
    def name(self) -> str:
        return self.fn.__name__


def _instrument(spec: ToolSpec, metrics: Metrics) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(spec.fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        info = request_info.get()
        outcome = "ok"
        started = time.perf_counter()
        # The SDK already opens a `tools/call NAME` span around us; annotate it rather than nest another.
        span = trace.get_current_span()
        span.set_attribute("enduser.id", principal.subject)
        try:
            principal.require_role(spec.min_role)
            return await spec.fn(*args, **kwargs)
        except MahavishnuError as exc:
            outcome = _OUTCOMES.get(type(exc).__name__, "failed")
            span.set_attribute("mahavishnu.outcome", outcome)
            if exc.protocol_error:
                raise MCPError(exc.code, exc.message) from None
            return _error_result(exc)
        except MCPError:
            outcome = "failed"
            raise
        except Exception:
            outcome = "error"
            span.set_status(StatusCode.ERROR, "internal")
            request_id = info.request_id if info else "n/a"
            log.exception("tool_crashed", tool=spec.name, request_id=request_id)
            raise MCPError(INTERNAL_ERROR, f"internal error (request id {request_id})") from None
        finally:
            elapsed = time.perf_counter() - started
            metrics.tool_calls.labels(spec.name, outcome).inc()
            metrics.tool_duration.labels(spec.name).observe(elapsed)
            if info is not None:  # HTTP: the request's own log line carries the tool's outcome
                info.tool_outcome, info.tool_ms = outcome, round(elapsed * 1000, 2)
            else:  # stdio: no request line, so the tool call gets its own
                log.info(
                    "tool_call",
                    tool=spec.name,
                    outcome=outcome,
                    duration_ms=round(elapsed * 1000, 2),
                    principal=principal.subject,
                )

    return call


def _error_result(exc: MahavishnuError) -> CallToolResult:
    meta = {ERROR_META_KEY: {"code": exc.code, "type": type(exc).__name__, "retryable": exc.retryable}}
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=exc.message)], _meta=meta)


def build_mcp_server(
    *,
    name: str,
    version: str,
    instructions: str,
    tools: Sequence[ToolSpec],
    metrics: Metrics,
    middleware: Sequence[ServerMiddleware[Any]] = (),
    configure: Callable[[MCPServer], None] | None = None,
) -> MCPServer:
    """Build the SDK server with every tool instrumented; `configure` adds resources and such."""
    server: MCPServer = MCPServer(
        name=name, version=version, instructions=instructions, middleware=middleware, log_level="WARNING"
    )
    for spec in tools:
        server.add_tool(
            _instrument(spec, metrics),
            name=spec.name,
            title=spec.title,
            annotations=ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=False),
            structured_output=True,
        )
    if configure is not None:
        configure(server)
    return server
