"""The request pipeline in front of the MCP SDK, as pure-ASGI middleware.

    RequestObserver (every route)   request id, trace span, access log, HTTP metrics, last-resort 500
      └── McpGate (/mcp only)       Host/Origin (421/403) → 405 → body limit (413) → JSON-RPC parse
                                    (-32700/-32600, lenient initialize) → bearer auth (401) → tool role
                                    (403) → rate limit (429)
            └── the SDK's Streamable HTTP app (stateless, DNS-rebinding protection): a JSON answer, or an
                SSE stream when the request carries a progress token and the client accepts SSE

Pure ASGI (no BaseHTTPMiddleware) keeps one task per request, so the principal
and trace context set here are visible in the tool call below.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from mcp.server.transport_security import TransportSecurityMiddleware
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mahavishnu.platform._asgi import header, jsonrpc_error, replay_body, send_json
from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal, Role, TokenVerifier, principal_var
from mahavishnu.platform.errors import AuthenticationError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.ratelimit import ClientAddressResolver, RateLimiter

__all__ = ["McpGate", "RequestInfo", "RequestObserver", "request_info"]

log = get_logger("mahavishnu.http")
tracer = trace.get_tracer("mahavishnu.http")

PARSE_ERROR, INVALID_REQUEST = -32700, -32600
_KNOWN_ROUTES = frozenset({"/mcp", "/health", "/ready", "/metrics", "/.well-known/oauth-protected-resource"})
_TOKEN_QUERY_KEYS = frozenset({"access_token", "token", "auth", "authorization"})


@dataclass(slots=True)
class RequestInfo:
    """What the access log line says about one request; filled in as the pipeline learns it."""

    request_id: str
    client: str
    principal: str | None = None
    rpc_method: str | None = None
    tool: str | None = None
    tool_outcome: str | None = None
    tool_ms: float | None = None
    rejected: str | None = None


request_info: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "mahavishnu_request_info", default=None
)


class RequestObserver:
    """Outermost layer: one span, one log line and one metric sample per HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, addresses: ClientAddressResolver) -> None:
        self.app = app
        self.metrics = metrics
        self.addresses = addresses

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
        route = path if path in _KNOWN_ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        attributes = {"http.request.method": method, "url.path": route, "mahavishnu.request_id": request_id}
        with tracer.start_as_current_span(
            f"{method} {route}", kind=SpanKind.SERVER, attributes=attributes
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
        security: TransportSecurityMiddleware,
        verifier: TokenVerifier | None,
        limiter: RateLimiter | None,
        tool_roles: Mapping[str, Role],
        metrics: Metrics,
        resource_metadata_url: str,
    ) -> None:
        self.app = app
        self.streaming_app = streaming_app
        self.max_body_bytes = max_body_bytes
        self.security = security
        self.verifier = verifier
        self.limiter = limiter
        self.tool_roles = tool_roles
        self.metrics = metrics
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = request_info.get() or RequestInfo(new_id(), "unknown")
        # DNS-rebinding protection before anything else, so forged Host/Origin requests
        # neither spend a caller's rate budget nor reach authentication.
        refusal = await self.security.validate_request(Request(scope), is_post=False)
        if refusal is not None:
            info.rejected = "host_or_origin"
            await refusal(scope, receive, send)
            return
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
            return
        body = await self._read_body(scope, receive)
        if body is None:
            info.rejected = "body_too_large"
            await send_json(
                send,
                413,
                jsonrpc_error(None, INVALID_REQUEST, f"request body over {self.max_body_bytes} bytes"),
            )
            return
        message = await self._parse(body, send, info)
        if message is None:
            return
        request_id = message.get("id")
        principal = await self._authenticate(scope, send, info, request_id)
        if principal is None:
            return
        if not await self._authorize_tool(message, principal, send, info, request_id):
            return
        if not await self._within_budget(principal, send, info, request_id):
            return
        body = self._normalize(message, body)
        principal_var.set(principal)
        target = self.streaming_app if _wants_progress(scope, message) else self.app
        await target(_with_json_headers(scope), replay_body(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _parse(self, body: bytes, send: Send, info: RequestInfo) -> dict[str, Any] | None:
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            info.rejected = "parse_error"
            await send_json(
                send, 400, jsonrpc_error(None, PARSE_ERROR, "Parse error: the body is not valid JSON")
            )
            return None
        if isinstance(message, list):
            info.rejected = "batch"
            await send_json(
                send,
                400,
                jsonrpc_error(
                    None,
                    INVALID_REQUEST,
                    "Batch requests are not supported: send one JSON-RPC message per request",
                ),
            )
            return None
        if not isinstance(message, dict) or not isinstance(message.get("method", ""), str):
            info.rejected = "invalid_request"
            await send_json(
                send,
                400,
                jsonrpc_error(None, INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object"),
            )
            return None
        method = message.get("method")
        info.rpc_method = method if isinstance(method, str) and len(method) <= 64 else None
        params = message.get("params")
        if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
            info.tool = params["name"][:64]
        return message

    async def _authenticate(
        self, scope: Scope, send: Send, info: RequestInfo, request_id: Any
    ) -> Principal | None:
        if self.verifier is None:
            info.principal = LOCAL_PRINCIPAL.subject
            return LOCAL_PRINCIPAL
        query = scope.get("query_string", b"").decode("latin-1")
        if query and any(k.lower() in _TOKEN_QUERY_KEYS for k, _ in parse_qsl(query, keep_blank_values=True)):
            error = AuthenticationError(
                "tokens in the URL are refused (they end up in logs); use the Authorization header",
                reason="query_string",
            )
            await self._refuse_auth(send, info, request_id, error, invalid=True)
            return None
        authorization = header(scope, b"authorization")
        if not authorization:
            error = AuthenticationError(
                "authentication required: send Authorization: Bearer <token>", "missing"
            )
            await self._refuse_auth(send, info, request_id, error, invalid=False)
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            error = AuthenticationError(
                "the Authorization header must be 'Bearer <token>'", reason="malformed"
            )
            await self._refuse_auth(send, info, request_id, error, invalid=True)
            return None
        try:
            principal = self.verifier.verify(token.strip())
        except AuthenticationError as error:
            await self._refuse_auth(send, info, request_id, error, invalid=True)
            return None
        info.principal = principal.subject
        return principal

    async def _refuse_auth(
        self, send: Send, info: RequestInfo, request_id: Any, error: AuthenticationError, *, invalid: bool
    ) -> None:
        self.metrics.auth_failures.labels(reason=error.reason).inc()
        info.rejected = f"auth:{error.reason}"
        challenge = f'Bearer resource_metadata="{self.resource_metadata_url}"'
        if invalid:
            challenge += f', error="invalid_token", error_description="{error.message}"'
        await send_json(
            send,
            401,
            jsonrpc_error(request_id, error.code, error.message),
            headers=[("www-authenticate", challenge)],
        )

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
        await send_json(
            send,
            403,
            jsonrpc_error(
                request_id,
                -32003,
                f"tool {info.tool!r} needs the {needed} role; the caller is {principal.role}",
            ),
            headers=[("www-authenticate", challenge)],
        )
        return False

    async def _within_budget(
        self, principal: Principal, send: Send, info: RequestInfo, request_id: Any
    ) -> bool:
        if self.limiter is None:
            return True
        key = f"sub:{principal.subject}" if principal.authenticated else f"ip:{info.client}"
        decision = await self.limiter.check(key)
        if decision.allowed:
            return True
        if decision.backend_error:
            info.rejected = "rate_limit_backend"
            await send_json(
                send,
                503,
                jsonrpc_error(request_id, -32050, "rate limiting is unavailable; try again shortly"),
                headers=[("retry-after", "5")],
            )
            return False
        info.rejected = "rate_limited"
        await send_json(
            send,
            429,
            jsonrpc_error(request_id, -32029, f"rate limit exceeded; retry in {decision.retry_after} s"),
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


def _wants_progress(scope: Scope, message: dict[str, Any]) -> bool:
    """A request with a progress token, from a client that reads SSE, gets a streamed answer."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or meta.get("progressToken") is None:
        return False
    return "text/event-stream" in (header(scope, b"accept") or "")


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
