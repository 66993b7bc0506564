"""Turning a service's declared tools into MCP tools wrapped in the platform pipeline.

A service declares `ToolSpec`s: plain async functions with typed arguments
and a docstring the model reads. The platform registers each one with the
SDK behind one wrapper that checks the role, annotates the SDK's span, times
it, counts the outcome, logs it (on the HTTP request's line, or on its own
line over stdio), and maps exceptions: a `MahavishnuError`
becomes a tool error result (or, for access failures, a JSON-RPC error) with
its stable code and safe message; anything else is logged with its traceback
and reaches the client as a generic internal error naming the request id.

Before any of that, `ToolArgumentCheck` judges the arguments: one missing or of
the wrong type is a malformed request (-32602), one of the right type but out of
range is a tool error the model can correct, and both say which argument and why
in one short line instead of pydantic's report.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.tools.base import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mahavishnu.platform.auth import Role, current_principal
from mahavishnu.platform.errors import InvalidArgumentError, MahavishnuError
from mahavishnu.platform.http import request_info
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["ToolArgumentCheck", "ToolSpec", "build_mcp_server"]

INVALID_PARAMS, INTERNAL_ERROR = -32602, -32603
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


class ToolArgumentCheck:
    """Server middleware: validates tools/call arguments against the tool's own schema first.

    Left to itself the SDK answers both a wrong type and an out-of-range value with a tool
    result holding pydantic's multi-line report. Here the same validation (the SDK's, on the
    tool's `fn_metadata`) runs before the call, and: missing argument or wrong type → JSON-RPC
    -32602 (the request is malformed); a well-typed value that breaks a constraint → an
    `isError` result with code -32602 in `_meta`, which the model reads and corrects. Valid
    calls, and tools it does not know, go on unchanged: the SDK answers an unknown name with
    its own `Unknown tool` result, the shape the conformance baseline records.
    """

    def __init__(self, tools: Mapping[str, Tool], metrics: Metrics) -> None:
        self._tools = tools
        self._metrics = metrics

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if ctx.method != "tools/call" or not isinstance(params, dict):
            return await call_next(ctx)
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return await call_next(ctx)  # the SDK's params validation answers these with -32602
        tool = self._tools.get(name)
        if tool is None:
            return await call_next(ctx)
        try:
            tool.fn_metadata.validate_arguments(arguments or {})
        except ValidationError as exc:
            return self._refuse(name, exc.errors())
        return await call_next(ctx)

    def _refuse(self, name: str, errors: Sequence[ErrorDetails]) -> CallToolResult:
        self._metrics.tool_calls.labels(name, "invalid").inc()
        info = request_info.get()
        if info is not None:  # the request's access log line says why the tool never ran
            info.tool_outcome = "invalid"
        text = f"invalid arguments for tool {name!r}: " + "; ".join(_describe_error(e) for e in errors)
        if any(_is_shape_error(e) for e in errors):
            raise MCPError(INVALID_PARAMS, text)
        return _error_result(InvalidArgumentError(text))


_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "decimal": "a number",
    "string": "a string",
    "bool": "a boolean",
    "list": "an array",
    "tuple": "an array",
    "set": "an array",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
}


def _is_shape_error(error: ErrorDetails) -> bool:
    """Missing, or the wrong JSON type: the caller broke the schema, not a value constraint."""
    kind = error["type"]
    return kind == "missing" or kind == "int_from_float" or kind.endswith(("_type", "_parsing"))


def _describe_error(error: ErrorDetails) -> str:
    """`limit: expected an integer`, `name: required`, `limit: should be less than or equal to
    200`: the argument's path and what was expected, never the rejected value itself."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    path = path.lstrip(".") or "arguments"
    kind = error["type"]
    if kind == "missing":
        return f"{path}: required"
    if _is_shape_error(error):
        noun = _NOUNS.get(kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float"))
        if noun is not None:
            return f"{path}: expected {noun}"
    message = error["msg"].removeprefix("Input ")
    return f"{path}: {message[:1].lower()}{message[1:]}"


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
    """Build the SDK server with every tool instrumented; `configure` adds resources and such.

    Only the tools given here get `ToolArgumentCheck`'s short messages; one that `configure`
    registers itself keeps the SDK's own validation.
    """
    registered = {spec.name: _register(spec, metrics) for spec in tools}
    server: MCPServer = MCPServer(
        name=name,
        version=version,
        instructions=instructions,
        tools=list(registered.values()),
        middleware=[ToolArgumentCheck(registered, metrics), *middleware],
        log_level="WARNING",
    )
    if configure is not None:
        configure(server)
    return server


def _register(spec: ToolSpec, metrics: Metrics) -> Tool:
    return Tool.from_function(
        _instrument(spec, metrics),
        name=spec.name,
        title=spec.title,
        annotations=ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=False),
        structured_output=True,
    )
