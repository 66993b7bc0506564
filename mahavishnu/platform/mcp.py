"""Turning a service's declared tools and resources into MCP handlers wrapped in the platform pipeline.

A service declares `ToolSpec`s (plain async functions with typed arguments and a
docstring the model reads) and `ResourceSpec`s (templated resources such as
`repo://{name}`). The platform registers each one with the SDK behind one
wrapper that checks the role, annotates the SDK's span, times it, counts the
outcome, logs it (on the HTTP request's line, or on its own line over stdio), and
maps exceptions: a `PlatformError` becomes a tool error result (or, for access
failures and for every resource failure, a JSON-RPC error) with its stable code
and safe message; anything else is logged with its traceback and reaches the
client as a generic internal error naming the request id. Tools and resources
share the metric families: a resource is counted as `resource:TEMPLATE_NAME`,
never by its URI, so the label set stays as small as the set of declarations.

Before any of that, `ToolArgumentCheck` judges the arguments: one missing or of
the wrong type is a malformed request (-32602), one of the right type but out of
range is a tool error the model can correct (code -32602 in `_meta`), and both say
which argument and why in one short line (`limit: must be between 1 and 200`,
worded by `arguments.py`) instead of pydantic's report. Descriptions are the
docstrings without their indentation.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.tools.base import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mahavishnu.platform.arguments import Bounds, describe_errors, is_shape_error, schema_bounds
from mahavishnu.platform.auth import Principal, Role, current_principal
from mahavishnu.platform.client_logging import ClientLogBinding, LogLevels, install_client_logging
from mahavishnu.platform.errors import InvalidArgumentError, PlatformError
from mahavishnu.platform.http import RequestInfo, request_info
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["ResourceSpec", "ToolArgumentCheck", "ToolSpec", "build_mcp_server"]

ERROR_META_KEY = "io.mahavishnu/error"
RESOURCE_LABEL_PREFIX = "resource:"
log = get_logger("mahavishnu.tools")


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


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """A templated resource as a service declares it; the platform decides how it is read.

    `fn` takes the template's variables as keyword arguments (`repo://{name}` → `name`) and
    returns the content, text or bytes. For a name that does not exist, or that the caller may
    not see, it raises `NotFoundError`: clients get MCP's -32002 and cannot tell the two apart.
    """

    uri_template: str
    fn: Callable[..., Awaitable[str | bytes]]
    name: str
    """The template's name: what clients list, and the metric label (the URI never is one)."""
    mime_type: str = "text/plain"
    min_role: Role = "viewer"
    title: str | None = None
    description: str | None = None
    """What clients list; the reader's docstring when not given."""

    @property
    def label(self) -> str:
        return RESOURCE_LABEL_PREFIX + self.name


class _Site:
    """One tool or resource as the pipeline sees it: its role, labels, log events and metric
    children, worked out once at registration so a call only looks up what varies (the outcome)."""

    __slots__ = (
        "_calls",
        "_duration",
        "_ok",
        "call_event",
        "crash_event",
        "kind",
        "label",
        "min_role",
        "name",
    )

    def __init__(
        self, kind: Literal["tool", "resource"], name: str, label: str, min_role: Role, metrics: Metrics
    ) -> None:
        self.kind, self.name, self.label, self.min_role = kind, name, label, min_role
        self.crash_event = f"{kind}_crashed"
        self.call_event = "tool_call" if kind == "tool" else "resource_read"
        self._calls = metrics.tool_calls
        self._ok = metrics.tool_calls.labels(label, "ok")
        self._duration = metrics.tool_duration.labels(label)

    def record(self, outcome: str, elapsed: float, info: RequestInfo | None, principal: Principal) -> None:
        """Count and time the call; put its outcome on the request's log line, or (stdio) its own."""
        (self._ok if outcome == "ok" else self._calls.labels(self.label, outcome)).inc()
        self._duration.observe(elapsed)
        elapsed_ms = round(elapsed * 1000, 2)
        if info is not None:  # HTTP: the request's own log line carries the outcome
            info.tool, info.tool_outcome, info.tool_ms = self.label, outcome, elapsed_ms
        else:  # stdio: no request line, so the call gets its own
            log.info(
                self.call_event,
                **{self.kind: self.name},
                outcome=outcome,
                duration_ms=elapsed_ms,
                principal=principal.subject,
            )

    def crashed(self, span: Span, info: RequestInfo | None) -> MCPError:
        """Log the exception being handled, with its traceback; the client learns only the request id."""
        span.set_status(StatusCode.ERROR, "internal")
        request_id = info.request_id if info else "n/a"
        log.exception(self.crash_event, **{self.kind: self.name}, request_id=request_id)
        return MCPError(INTERNAL_ERROR, f"internal error (request id {request_id})")


def _observed(
    fn: Callable[..., Awaitable[Any]], site: _Site, answer: Callable[[PlatformError], Any]
) -> Callable[..., Awaitable[Any]]:
    """`fn` inside the pipeline; `answer` turns a `PlatformError` into what the client gets."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        info = request_info.get()
        outcome = "ok"
        started = time.perf_counter()
        # The SDK already opens a span per MCP message around us; annotate it rather than nest another.
        span = trace.get_current_span()
        span.set_attribute("enduser.id", principal.subject)
        try:
            principal.require_role(site.min_role)
            return await fn(*args, **kwargs)
        except PlatformError as exc:
            outcome = exc.outcome
            span.set_attribute("mahavishnu.outcome", outcome)
            return answer(exc)
        except MCPError:
            outcome = "failed"
            raise
        except Exception:
            outcome = "error"
            raise site.crashed(span, info) from None
        finally:
            site.record(outcome, time.perf_counter() - started, info, principal)

    return call


def _answer_tool(exc: PlatformError) -> CallToolResult:
    """Access failures are protocol errors; the rest a result the model reads and acts on."""
    if exc.protocol_error:
        raise MCPError(exc.jsonrpc_code, exc.message) from None
    return _error_result(exc)


def _answer_resource(exc: PlatformError) -> NoReturn:
    """A read has no error result: every failure is a JSON-RPC error (not found: -32002)."""
    raise MCPError(exc.jsonrpc_code, exc.message) from None


def _error_result(exc: PlatformError) -> CallToolResult:
    meta = {ERROR_META_KEY: {"code": exc.code, "type": type(exc).__name__, "retryable": exc.retryable}}
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=exc.message)], _meta=meta)


class ToolArgumentCheck:
    """Server middleware: every argument error of every request in one voice (`arguments.py`).

    Left to itself the SDK answers both a wrong type and an out-of-range value with a tool
    result holding pydantic's multi-line report, and a malformed request of any method with a
    bare "Invalid request parameters". Here a tool's arguments are validated first, by the SDK's
    own validation on the tool's `fn_metadata`, and: missing argument or wrong type → JSON-RPC
    -32602 (the request is malformed); a well-typed value that breaks a constraint → an
    `isError` result with code -32602 in `_meta`, which the model reads and corrects. Params
    the SDK refuses for any other method become a -32602 naming the field. Valid calls, and
    tools it does not know, go on unchanged: the SDK answers an unknown name with its own
    `Unknown tool` result, the shape the conformance baseline records.
    """

    def __init__(self, tools: Mapping[str, Tool], metrics: Metrics) -> None:
        self._tools = {name: (tool, schema_bounds(tool.parameters)) for name, tool in tools.items()}
        self._metrics = metrics

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            refusal = self._check_tool_call(ctx.params)
            if refusal is not None:
                return refusal
        try:
            return await call_next(ctx)
        except ValidationError as exc:  # the SDK's params model for the method
            text = describe_errors(exc.errors(), within="params")
            raise MCPError(INVALID_PARAMS, f"invalid params for {ctx.method}: {text}") from None

    def _check_tool_call(self, params: Mapping[str, Any] | None) -> CallToolResult | None:
        if not isinstance(params, Mapping):
            return None
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return None  # the SDK's params validation refuses these, then __call__ words it
        known = self._tools.get(name)
        if known is None:
            return None
        tool, bounds = known
        try:
            tool.fn_metadata.validate_arguments(arguments or {})
        except ValidationError as exc:
            return self._refuse(name, exc.errors(), bounds)
        return None

    def _refuse(self, name: str, errors: Sequence[ErrorDetails], bounds: Bounds) -> CallToolResult:
        self._metrics.tool_calls.labels(name, InvalidArgumentError.outcome).inc()
        info = request_info.get()
        if info is not None:  # the request's access log line says why the tool never ran
            info.tool_outcome = InvalidArgumentError.outcome
        text = f"invalid arguments for tool {name!r}: {describe_errors(errors, bounds)}"
        if any(is_shape_error(e) for e in errors):
            raise MCPError(INVALID_PARAMS, text)
        return _error_result(InvalidArgumentError(text))


def build_mcp_server(
    *,
    name: str,
    version: str,
    instructions: str,
    tools: Sequence[ToolSpec],
    metrics: Metrics,
    resources: Sequence[ResourceSpec] = (),
    middleware: Sequence[ServerMiddleware[Any]] = (),
    configure: Callable[[MCPServer], None] | None = None,
    log_levels: LogLevels | None = None,
) -> MCPServer:
    """Build the SDK server with every tool and resource instrumented; `configure` adds the rest.

    Every service answers `logging/setLevel` (into `log_levels`, which the HTTP gate may share to
    stream the answers of callers that set one), and its tools reach their caller's log through
    `client_log()` (see `client_logging.py`).
    Only the tools given here get `ToolArgumentCheck`'s short messages, and only what is given
    here goes through the pipeline: whatever `configure` registers itself is neither counted
    nor role-checked, and its errors are mapped by the SDK.
    """
    registered = {spec.name: _register_tool(spec, metrics) for spec in tools}
    levels = log_levels or LogLevels()
    server: MCPServer = MCPServer(
        name=name,
        version=version,
        instructions=instructions,
        tools=list(registered.values()),
        middleware=[ToolArgumentCheck(registered, metrics), ClientLogBinding(levels), *middleware],
        log_level="WARNING",
    )
    install_client_logging(server, levels)
    for spec in resources:
        _register_resource(server, spec, metrics)
    if configure is not None:
        configure(server)
    return server


def _register_tool(spec: ToolSpec, metrics: Metrics) -> Tool:
    site = _Site("tool", spec.name, spec.name, spec.min_role, metrics)
    return Tool.from_function(
        _observed(spec.fn, site, _answer_tool),
        name=spec.name,
        title=spec.title,
        description=inspect.cleandoc(spec.fn.__doc__ or ""),
        annotations=ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=False),
        structured_output=True,
    )


def _register_resource(server: MCPServer, spec: ResourceSpec, metrics: Metrics) -> None:
    site = _Site("resource", spec.name, spec.label, spec.min_role, metrics)
    server.resource(
        spec.uri_template,
        name=spec.name,
        title=spec.title,
        description=spec.description or inspect.cleandoc(spec.fn.__doc__ or ""),
        mime_type=spec.mime_type,
    )(_observed(spec.fn, site, _answer_resource))
