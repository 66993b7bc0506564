"""The request pipeline in front of the MCP SDK, as pure-ASGI middleware.

    RequestObserver (every route)   request id, trace span (continuing the caller's `traceparent`),
                                    access log, HTTP metrics, last-resort 500
      └── McpGate (/mcp only)       Host/Origin (421/403) → 405 → body limit (413) → the address's
                                    budget unless the token is known good (429) → nesting depth and
                                    JSON parse (-32700) → JSON-RPC envelope (-32600/-32602, lenient
                                    initialize) → bearer auth (401) → tool role (403) → the token
                                    subject's budget (429)
            └── the SDK's Streamable HTTP app (stateless): a JSON answer, or an SSE stream when the
                request carries a progress token and the client accepts SSE

Pure ASGI (no BaseHTTPMiddleware) keeps one task per request, so the principal
and trace context set here are visible in the tool call below. The gate orchestrates; the
Host/Origin guard lives in `origin.py`, the depth pre-scan and envelope checks in `jsonrpc.py`,
bearer token extraction in `bearer.py`, and the access log's `RequestInfo` in `request_context.py`
(the names other modules import from here are re-exported).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_types import INVALID_REQUEST
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from mahavishnu.platform._asgi import header, read_body, replay_body, send_json
from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal, Role, TokenVerifier, principal_var
from mahavishnu.platform.bearer import bearer_token, known_principal
from mahavishnu.platform.client_logging import LogLevels
from mahavishnu.platform.errors import (
    AuthenticationError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    UnavailableError,
)
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.jsonrpc import Refusal, jsonrpc_error, parse_message
from mahavishnu.platform.observability import Metrics, get_logger, trace_context
from mahavishnu.platform.origin import HostOriginGuard
from mahavishnu.platform.ratelimit import ClientAddressResolver, RateLimiter
from mahavishnu.platform.request_context import RequestInfo, request_info

__all__ = [
    "HostOriginGuard",
    "McpGate",
    "RequestInfo",
    "RequestObserver",
    "RouteLabels",
    "bearer_token",
    "request_info",
]

log = get_logger("mahavishnu.http")
tracer = trace.get_tracer("mahavishnu.http")

OTHER_ROUTE = "other"
"""The one label of every path no route serves: scanners cannot grow the metric's label set."""


class RouteLabels:
    """The bounded label of a request path: the path (template) of the route that serves it, or
    `OTHER_ROUTE`.

    Built from the app's own routes, so a route a service adds is counted under its own name
    with nothing to keep in step, while invented paths share one label. Exact paths are one dict
    lookup (the hot path); templated routes (`/items/{id}`, mounts) are tried in the app's order
    and labelled by their template, never by the concrete path.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._exact: dict[str, str] = {}
        self._templates: list[tuple[re.Pattern[str], str]] = []
        for route in routes:
            path, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
            if not isinstance(path, str) or not isinstance(regex, re.Pattern):
                continue  # e.g. a Host route: nothing path-shaped to label it by
            if getattr(route, "param_convertors", None):
                self._templates.append((regex, path or "/"))
            elif path not in self._exact and self._template_of(path) is None:
                self._exact[path] = path  # (a path an earlier template serves keeps that label)

    def __call__(self, path: str) -> str:
        return self._exact.get(path) or self._template_of(path) or OTHER_ROUTE

    def _template_of(self, path: str) -> str | None:
        return next((template for regex, template in self._templates if regex.match(path)), None)


class RequestObserver:
    """Outermost layer: one span, one log line and one metric sample per HTTP request.

    Requests are labelled by route; the routes are `app.routes` (a Starlette app or router)
    unless given.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        addresses: ClientAddressResolver,
        routes: Iterable[BaseRoute] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.addresses = addresses
        self.route_label = RouteLabels(getattr(app, "routes", ()) if routes is None else routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else new_id()
        peer = scope["client"][0] if scope.get("client") else "unknown"
        info = RequestInfo(request_id, self.addresses.resolve(peer, header(scope, b"x-forwarded-for")))
        token = request_info.set(info)
        path, method = scope["path"], scope["method"]
        route = self.route_label(path)
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        attributes = {"http.request.method": method, "url.path": route, "mahavishnu.request_id": request_id}
        caller = trace_context(header(scope, b"traceparent"))  # another service's span, or a new trace
        with tracer.start_as_current_span(
            f"{method} {route}", context=caller, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                log.exception("unhandled_error", request_id=request_id, path=route)
                status = 500
                await send_json(send, 500, {"error": "internal error", "request_id": request_id})
            finally:
                elapsed = time.perf_counter() - started
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                self.metrics.http_requests.labels(route, method, str(status)).inc()
                self.metrics.http_duration.labels(route, method).observe(elapsed)
                if route != "/metrics" or status != 200:
                    log.info(
                        "http_request",
                        request_id=request_id,
                        method=method,
                        path=route,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                        client=info.client,
                        principal=info.principal,
                        rpc_method=info.rpc_method,
                        tool=info.tool,
                        tool_outcome=info.tool_outcome,
                        tool_ms=info.tool_ms,
                        rejected=info.rejected,
                    )
                request_info.reset(token)


class McpGate:
    """Everything between the HTTP request and the SDK: limits, parsing, identity, budget."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        streaming_app: ASGIApp,
        max_body_bytes: int,
        max_json_depth: int,
        guard: HostOriginGuard | None,
        verifier: TokenVerifier | None,
        limiter: RateLimiter | None,
        tool_roles: Mapping[str, Role],
        metrics: Metrics,
        resource_metadata_url: str,
        log_levels: LogLevels | None = None,
    ) -> None:
        self.app = app
        self.streaming_app = streaming_app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.guard = guard
        self.verifier = verifier
        self.limiter = limiter
        self.tool_roles = tool_roles
        self.log_levels = log_levels
        self.metrics = metrics
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = request_info.get() or RequestInfo(new_id(), "unknown")
        # DNS-rebinding protection before anything else, so forged Host/Origin requests
        # neither spend a caller's rate budget nor reach authentication.
        if self.guard is not None and not await self.guard.admit(scope, send, info):
            return
        body = await self._posted_body(scope, receive, send, info)
        if body is None:
            return
        known = known_principal(self.verifier, scope) if self.verifier is not None else None
        # A caller without a token verified before (none, a bad one, a new one; everyone when auth
        # is off) spends its address's budget first: floods meet 429s before any parsing or
        # signature check, and forged tokens cannot be tried without limit.
        if known is None and not await self._within_budget(f"ip:{info.client}", send, info, None):
            return
        message = await self._parse(body, send, info)
        if message is None:
            return
        request_id = message.get("id")
        principal = known or await self._authenticate(scope, send, info, request_id)
        if principal is None:
            return
        info.principal = principal.subject
        if not await self._authorize_tool(message, principal, send, info, request_id):
            return
        if principal.authenticated and not await self._within_budget(
            f"sub:{principal.subject}", send, info, request_id
        ):
            return
        body = self._normalize(message, body)
        principal_var.set(principal)
        wants_logs = self.log_levels is not None and self.log_levels.wants_logs(principal)
        target = self.streaming_app if _wants_stream(scope, message, wants_logs) else self.app
        await target(_with_json_headers(scope), replay_body(body, receive), send)

    async def _posted_body(
        self, scope: Scope, receive: Receive, send: Send, info: RequestInfo
    ) -> bytes | None:
        """The body of a POST within `max_body_bytes`; None once the 405 or 413 is sent."""
        if scope["method"] != "POST":
            info.rejected = "method"
            await send_json(
                send,
                405,
                jsonrpc_error(
                    None, INVALID_REQUEST, "this stateless server takes JSON-RPC messages by POST only"
                ),
                headers=[("allow", "POST")],
            )
            return None
        body = await read_body(scope, receive, self.max_body_bytes)
        if body is None:
            info.rejected = "body_too_large"
            await send_json(
                send,
                413,
                jsonrpc_error(None, INVALID_REQUEST, f"request body over {self.max_body_bytes} bytes"),
            )
        return body

    async def _parse(self, body: bytes, send: Send, info: RequestInfo) -> dict[str, Any] | None:
        """The body as one JSON-RPC message MCP accepts, or None once the refusal is sent."""
        message = parse_message(body, self.max_json_depth)
        if isinstance(message, Refusal):
            await self._refuse(send, info, message)
            return None
        _describe(message, info)
        return message

    @staticmethod
    async def _refuse(send: Send, info: RequestInfo, refusal: Refusal) -> None:
        """A 400 with a JSON-RPC error: the message never reaches authentication or the SDK."""
        info.rejected = refusal.reason
        await send_json(send, 400, jsonrpc_error(refusal.request_id, refusal.code, refusal.text))

    async def _authenticate(
        self, scope: Scope, send: Send, info: RequestInfo, request_id: Any
    ) -> Principal | None:
        """The caller of a request whose token is not known yet; None once the 401 is sent."""
        if self.verifier is None:
            return LOCAL_PRINCIPAL
        try:
            return self.verifier.verify(bearer_token(scope))
        except AuthenticationError as error:
            await self._refuse_auth(send, info, request_id, error)
            return None

    async def _refuse_auth(
        self, send: Send, info: RequestInfo, request_id: Any, error: AuthenticationError
    ) -> None:
        self.metrics.auth_failures.labels(reason=error.reason).inc()
        info.rejected = f"auth:{error.reason}"
        challenge = f'Bearer resource_metadata="{self.resource_metadata_url}"'
        if error.reason != "missing":
            challenge += f', error="invalid_token", error_description="{error.message}"'
        await _send_error(send, request_id, error, headers=[("www-authenticate", challenge)])

    async def _authorize_tool(
        self, message: dict[str, Any], principal: Principal, send: Send, info: RequestInfo, request_id: Any
    ) -> bool:
        needed = self.tool_roles.get(info.tool or "") if message.get("method") == "tools/call" else None
        if needed is None or principal.has_role(needed):
            return True
        info.rejected = "forbidden"
        challenge = (
            f'Bearer error="insufficient_scope", scope="{needed}", '
            f'resource_metadata="{self.resource_metadata_url}"'
        )
        denied = PermissionDeniedError(
            f"tool {info.tool!r} needs the {needed} role; the caller is {principal.role}"
        )
        await _send_error(send, request_id, denied, headers=[("www-authenticate", challenge)])
        return False

    async def _within_budget(self, key: str, send: Send, info: RequestInfo, request_id: Any) -> bool:
        if self.limiter is None:
            return True
        decision = await self.limiter.check(key)
        if decision.allowed:
            return True
        if decision.backend_error:
            info.rejected = "rate_limit_backend"
            unavailable = UnavailableError("rate limiting is unavailable; try again shortly")
            await _send_error(send, request_id, unavailable, headers=[("retry-after", "5")])
            return False
        info.rejected = "rate_limited"
        limited = RateLimitedError(f"rate limit exceeded; retry in {decision.retry_after} s")
        await _send_error(
            send,
            request_id,
            limited,
            headers=[
                ("retry-after", str(decision.retry_after)),
                ("ratelimit-limit", str(decision.limit)),
                ("ratelimit-remaining", str(decision.remaining)),
                ("ratelimit-reset", str(decision.retry_after)),
            ],
        )
        return False

    @staticmethod
    def _normalize(message: dict[str, Any], body: bytes) -> bytes:
        """Let a plain curl `initialize` through: fill the fields a real client always sends."""
        if message.get("method") != "initialize":
            return body
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return body
        params.setdefault("protocolVersion", LATEST_HANDSHAKE_VERSION)
        params.setdefault("capabilities", {})
        params.setdefault("clientInfo", {"name": "unknown-client", "version": "0"})
        message["params"] = params
        return json.dumps(message).encode()


async def _send_error(
    send: Send, request_id: Any, error: PlatformError, headers: Iterable[tuple[str, str]] = ()
) -> None:
    """The gate's answer for a platform error: its HTTP status, and its JSON-RPC code and message."""
    await send_json(
        send, error.http_status, jsonrpc_error(request_id, error.jsonrpc_code, error.message), headers
    )


def _describe(message: dict[str, Any], info: RequestInfo) -> None:
    """What the access log says about the message: its method and, for tools/call, the tool."""
    method = message.get("method")
    info.rpc_method = method if isinstance(method, str) and len(method) <= 64 else None
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        info.tool = params["name"][:64]


def _wants_stream(scope: Scope, message: dict[str, Any], wants_logs: bool) -> bool:
    """A request with a progress token, or from a caller that set a log level, gets a streamed
    answer when its client reads SSE: notifications have no room in a JSON answer."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    has_token = isinstance(meta, dict) and meta.get("progressToken") is not None
    return (has_token or wants_logs) and "text/event-stream" in (header(scope, b"accept") or "")


def _with_json_headers(scope: Scope) -> Scope:
    """Default the Accept and Content-Type headers the Streamable HTTP transport insists on."""
    names = {k for k, _ in scope["headers"]}
    extra = []
    if b"accept" not in names:
        extra.append((b"accept", b"application/json, text/event-stream"))
    if b"content-type" not in names:
        extra.append((b"content-type", b"application/json"))
    if not extra:
        return scope
    return {**scope, "headers": [*scope["headers"], *extra]}
