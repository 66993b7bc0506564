"""The request pipeline in front of the MCP SDK, as pure-ASGI middleware.

    RequestObserver (every route)   request id, trace span, access log, HTTP metrics, last-resort 500
      └── McpGate (/mcp only)       Host/Origin (421/403) → 405 → body limit (413) → the address's
                                    budget unless the token is known good (429) → nesting depth and
                                    JSON parse (-32700) → JSON-RPC envelope (-32600/-32602, lenient
                                    initialize) → bearer auth (401) → tool role (403) → the token
                                    subject's budget (429)
            └── the SDK's Streamable HTTP app (stateless): a JSON answer, or an SSE stream when the
                request carries a progress token and the client accepts SSE

Pure ASGI (no BaseHTTPMiddleware) keeps one task per request, so the principal
and trace context set here are visible in the tool call below.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from mcp_types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from mahavishnu.platform._asgi import header, json_nesting_exceeds, jsonrpc_error, replay_body, send_json
from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal, Role, TokenVerifier, principal_var
from mahavishnu.platform.errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    UnavailableError,
)
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.ratelimit import ClientAddressResolver, RateLimiter

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

MAX_PROGRESS_TOKEN_CHARS = 128
"""A progress token is echoed in every progress notification, so it is kept short."""
_MAX_PROGRESS_INT = 2**63
OTHER_ROUTE = "other"
"""The one label of every path no route serves: scanners cannot grow the metric's label set."""
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
        max_json_depth: int,
        guard: HostOriginGuard | None,
        verifier: TokenVerifier | None,
        limiter: RateLimiter | None,
        tool_roles: Mapping[str, Role],
        metrics: Metrics,
        resource_metadata_url: str,
    ) -> None:
        self.app = app
        self.streaming_app = streaming_app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.guard = guard
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
        if self.guard is not None and not await self.guard.admit(scope, send, info):
            return
        body = await self._posted_body(scope, receive, send, info)
        if body is None:
            return
        known = _known_principal(self.verifier, scope) if self.verifier is not None else None
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
        target = self.streaming_app if _wants_progress(scope, message) else self.app
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
        body = await self._read_body(scope, receive)
        if body is None:
            info.rejected = "body_too_large"
            await send_json(
                send,
                413,
                jsonrpc_error(None, INVALID_REQUEST, f"request body over {self.max_body_bytes} bytes"),
            )
        return body

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
        """The body as one JSON-RPC message MCP accepts, or None once the refusal is sent."""
        if json_nesting_exceeds(body, self.max_json_depth):
            await self._refuse(
                send,
                info,
                "too_deep",
                None,
                PARSE_ERROR,
                f"Parse error: JSON nested deeper than {self.max_json_depth} levels",
            )
            return None
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: belt and braces
            await self._refuse(
                send, info, "parse_error", None, PARSE_ERROR, "Parse error: the body is not valid JSON"
            )
            return None
        if isinstance(message, list):
            await self._refuse(
                send,
                info,
                "batch",
                None,
                INVALID_REQUEST,
                "Batch requests are not supported: send one JSON-RPC message per request",
            )
            return None
        if not isinstance(message, dict):
            await self._refuse(
                send,
                info,
                "invalid_request",
                None,
                INVALID_REQUEST,
                "Invalid Request: expected a JSON-RPC 2.0 object",
            )
            return None
        problem = _envelope_problem(message)
        if problem is not None:
            code, text = problem
            request_id = message.get("id") if _is_request_id(message.get("id")) else None
            reason = "invalid_request" if code == INVALID_REQUEST else "invalid_params"
            await self._refuse(send, info, reason, request_id, code, text)
            return None
        _describe(message, info)
        return message

    @staticmethod
    async def _refuse(
        send: Send, info: RequestInfo, reason: str, request_id: Any, code: int, text: str
    ) -> None:
        """A 400 with a JSON-RPC error: the message never reaches authentication or the SDK."""
        info.rejected = reason
        await send_json(send, 400, jsonrpc_error(request_id, code, text))

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


def bearer_token(scope: Scope) -> str:
    """The request's bearer token; AuthenticationError says why there is none to check."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query and any(k.lower() in _TOKEN_QUERY_KEYS for k, _ in parse_qsl(query, keep_blank_values=True)):
        raise AuthenticationError(
            "tokens in the URL are refused (they end up in logs); use the Authorization header",
            reason="query_string",
        )
    authorization = header(scope, b"authorization")
    if not authorization:
        raise AuthenticationError("authentication required: send Authorization: Bearer <token>", "missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'", reason="malformed")
    return token.strip()


def _known_principal(verifier: TokenVerifier, scope: Scope) -> Principal | None:
    """The principal of a token verified before: the hot path, no signature check."""
    try:
        return verifier.lookup(bearer_token(scope))
    except AuthenticationError:
        return None


def _is_request_id(value: object) -> bool:
    """MCP request ids are strings or integers (never null, floats or booleans)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _envelope_problem(message: dict[str, Any]) -> tuple[int, str] | None:
    """Why an object is not a JSON-RPC 2.0 message MCP accepts, as (code, message); None if it is.

    The SDK would take a request with an object id for a notification (202, no answer) and
    answer other shape errors with pydantic's text under the wrong code, so the gate decides.
    """
    if message.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'
    if "method" not in message:
        return _response_problem(message)
    if not isinstance(message["method"], str):
        return INVALID_REQUEST, 'Invalid Request: "method" must be a string'
    if "id" in message and not _is_request_id(message["id"]):
        return INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'
    return _params_problem(message.get("params"))


def _response_problem(message: dict[str, Any]) -> tuple[int, str] | None:
    """A message without a method must be a response: a result or an error for a request id."""
    request_id = message.get("id")
    if isinstance(message.get("result"), dict) and _is_request_id(request_id):
        return None
    if isinstance(message.get("error"), dict) and (request_id is None or _is_request_id(request_id)):
        return None
    return INVALID_REQUEST, 'Invalid Request: a request needs a "method"; a response a "result" or "error"'


def _params_problem(params: object) -> tuple[int, str] | None:
    """Params are an object (or absent/null); `_meta` an object; a progress token short."""
    if params is None:
        return None
    if isinstance(params, list):
        return INVALID_PARAMS, "Invalid params: MCP methods take named parameters (an object)"
    if not isinstance(params, dict):
        return INVALID_REQUEST, 'Invalid Request: "params" must be an object'
    meta = params.get("_meta")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        return INVALID_PARAMS, 'Invalid params: "_meta" must be an object'
    token = meta.get("progressToken")
    if token is None or _is_progress_token(token):
        return None
    return INVALID_PARAMS, (
        f"Invalid params: _meta.progressToken must be a string of at most {MAX_PROGRESS_TOKEN_CHARS} "
        "characters or an integer"
    )


def _is_progress_token(token: object) -> bool:
    if isinstance(token, str):
        return len(token) <= MAX_PROGRESS_TOKEN_CHARS
    return isinstance(token, int) and not isinstance(token, bool) and abs(token) < _MAX_PROGRESS_INT


def _describe(message: dict[str, Any], info: RequestInfo) -> None:
    """What the access log says about the message: its method and, for tools/call, the tool."""
    method = message.get("method")
    info.rpc_method = method if isinstance(method, str) and len(method) <= 64 else None
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        info.tool = params["name"][:64]


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


_ANY_PORT = -1
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+(%[A-Za-z0-9._~-]+)?\]")
HostKey = tuple[str, int | None]
OriginKey = tuple[str, str, int | None]


class HostOriginGuard:
    """DNS-rebinding protection with exact matching: Host and Origin are parsed into scheme, host
    and port and compared whole, so `http://127.0.0.1:8680.evil.com` is not `http://127.0.0.1:*`.

    The SDK's check compares string prefixes. Here a pattern is `host`, `host:port` or `host:*`
    (any numeric port), and for origins `scheme://` before it; a header that does not parse is
    refused. Loopback names accept any port: the browser sends them only for pages that really are
    on this machine, and port-mapped containers and port forwards reach us on other ports.
    """

    LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
    LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")

    def __init__(self, *, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> None:
        self._hosts = {_pattern(_parse_host(h, wildcard=True), "allowed_hosts", h) for h in allowed_hosts}
        self._origins = {
            _pattern(_parse_origin(o, wildcard=True), "allowed_origins", o) for o in allowed_origins
        }
        # Clients send the same few values again and again: remember the verdicts (bounded, so
        # a stream of invented headers only churns the cache).
        self._admits_host = functools.lru_cache(maxsize=256)(self._judge_host)
        self._admits_origin = functools.lru_cache(maxsize=256)(self._judge_origin)

    @classmethod
    def with_loopback(cls, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> HostOriginGuard:
        return cls(
            allowed_hosts=[*cls.LOOPBACK_HOSTS, *allowed_hosts],
            allowed_origins=[*cls.LOOPBACK_ORIGINS, *allowed_origins],
        )

    async def admit(self, scope: Scope, send: Send, info: RequestInfo) -> bool:
        """True to go on; otherwise the 421 (Host) or 403 (Origin) has been sent."""
        host = header(scope, b"host")
        if host is None or not self._admits_host(host):
            info.rejected = "host_or_origin"
            await send_json(send, 421, jsonrpc_error(None, INVALID_REQUEST, "Invalid Host header"))
            return False
        origin = header(scope, b"origin")
        if origin is not None and not self._admits_origin(origin):
            info.rejected = "host_or_origin"
            await send_json(send, 403, jsonrpc_error(None, INVALID_REQUEST, "Invalid Origin header"))
            return False
        return True

    def _judge_host(self, value: str) -> bool:
        parsed = _parse_host(value, wildcard=False)
        return parsed is not None and _matches(parsed, self._hosts)

    def _judge_origin(self, value: str) -> bool:
        parsed = _parse_origin(value, wildcard=False)
        return parsed is not None and _matches(parsed, self._origins)


def _matches(key: tuple[Any, ...], patterns: set[Any]) -> bool:
    """Exactly listed, or listed with `:*` and carrying a port."""
    return key in patterns or (key[-1] is not None and (*key[:-1], _ANY_PORT) in patterns)


def _pattern(parsed: Any, setting: str, raw: str) -> Any:
    if parsed is None:
        raise ConfigurationError(
            f"{setting}: {raw!r} is not host, host:port or host:* (origins: scheme://host[:port|:*])"
        )
    return parsed


def _parse_host(value: str, *, wildcard: bool) -> HostKey | None:
    """`host`, `host:port`, `[v6]` or `[v6]:port` → (lowercase host, port); None when malformed."""
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[: end + 1], value[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")) or not _IPV6_LITERAL.fullmatch(name):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, after = value.partition(":")
        port_text = after if colon else None
        if not _HOST_NAME.fullmatch(name):
            return None
    port = _parse_port(port_text, wildcard=wildcard)
    if port is None and port_text is not None:
        return None
    return name.lower(), port


def _parse_port(text: str | None, *, wildcard: bool) -> int | None:
    if text is None:
        return None
    if wildcard and text == "*":
        return _ANY_PORT
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        return None
    return int(text)


def _parse_origin(value: str, *, wildcard: bool) -> OriginKey | None:
    """`scheme://host[:port]` (nothing after it) → (lowercase scheme, host, port); None when malformed."""
    scheme, separator, authority = value.partition("://")
    if not separator or not scheme.isalpha():
        return None
    host = _parse_host(authority, wildcard=wildcard)
    return None if host is None else (scheme.lower(), *host)
