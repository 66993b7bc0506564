"""Calling another service's MCP tools (Mahavishnu writing agent runs to Session-Buddy): the
official MCP client over Streamable HTTP, a connection per piece of work, with explicit
timeouts, the token, and the caller's trace context on every request.

Failures come out as the platform's errors, so a pusher judges them as it judges the service
client's (`platform/service_client.py`):

    cannot connect, a timeout, HTTP 429 or 5xx,      ServiceUnavailableError (retryable)
    JSON-RPC -32029 (rate), -32050 (unavailable)
    JSON-RPC -32001, -32003 (the token refused)      ConfigurationError naming the token's setting
    a tool's error result (`isError`)                by its code: retryable -> ServiceUnavailableError,
                                                     not found -> NotFoundError, else InvalidArgumentError
    any other JSON-RPC error                         InvalidArgumentError

The token is set on each request as it is sent (an httpx `Auth`), never in the client's default
headers: it is in no log line, error or repr.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from opentelemetry import propagate
from pydantic import SecretStr

from mahavishnu.platform.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    UnavailableError,
)
from mahavishnu.platform.mcp import ERROR_META_KEY
from mahavishnu.platform.service_client import ServiceUnavailableError

__all__ = ["McpPeer", "PeerTools"]

_REFUSED = frozenset({AuthenticationError.jsonrpc_code, PermissionDeniedError.jsonrpc_code})
_RETRYABLE = frozenset({RateLimitedError.jsonrpc_code, UnavailableError.jsonrpc_code, -32603, -32000})
"""Rate limited, unavailable, and the SDK's stand-in for an HTTP 5xx without a JSON-RPC body."""


class McpPeer:
    """The MCP tools of the service at `base_url` (its endpoint is `{base_url}/mcp`)."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        token: SecretStr | None,
        credentials_in: str,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.service = service
        self._url = f"{base_url}/mcp"
        self._auth = _Bearer(token)
        self._credentials_in = credentials_in
        """The setting holding the token, named when the peer refuses it: what to fix."""
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"McpPeer(service={self.service!r}, url={self._url!r})"

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[PeerTools]:
        """A connection (the handshake done) for the block; what fails in it, the handshake
        included, is raised as a platform error (the block's own errors pass unchanged)."""
        timeout = httpx2.Timeout(self._timeout, connect=min(self._timeout, 5.0))
        try:
            async with (
                httpx2.AsyncClient(timeout=timeout, auth=self._auth) as http,
                Client(
                    streamable_http_client(self._url, http_client=http),
                    mode="legacy",
                    cache=None,
                    read_timeout_seconds=self._timeout,
                ) as client,
            ):
                yield PeerTools(self, client)
        except Exception as exc:
            mapped = self._mapped(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _mapped(self, exc: Exception) -> Exception:
        """The platform error `exc` stands for; the exception itself when it is no peer's."""
        leaves = list(_leaves(exc))
        platform = next((e for e in leaves if isinstance(e, PlatformError)), None)
        if platform is not None:
            return platform
        wire = next((e for e in leaves if isinstance(e, MCPError | httpx2.HTTPError)), None)
        if isinstance(wire, MCPError):
            return self._protocol_error(wire)
        if isinstance(wire, httpx2.HTTPStatusError):
            status = wire.response.status_code
            return self._protocol_error(MCPError(_status_code(status), f"HTTP {status}"))
        if wire is not None:
            return self._unavailable(f"cannot reach {self.service}: {type(wire).__name__}")
        only = leaves[0] if len(leaves) == 1 else exc
        return only if isinstance(only, Exception) else exc

    def _protocol_error(self, error: MCPError) -> Exception:
        what = f"{self.service} answered with JSON-RPC error {error.code}: {error.message}"
        if error.code in _REFUSED:
            return ConfigurationError(f"{what}; check {self._credentials_in}")
        if error.code in _RETRYABLE:
            return self._unavailable(what)
        return InvalidArgumentError(what)

    def _tool_error(self, tool: str, result: CallToolResult) -> PlatformError:
        text = " ".join(getattr(part, "text", "") for part in result.content).strip()
        what = f"{self.service} refused {tool}: {text or 'no reason given'}"
        meta = (result.meta or {}).get(ERROR_META_KEY)
        details = meta if isinstance(meta, dict) else {}
        if details.get("retryable") is True:
            return self._unavailable(what)
        if details.get("code") == NotFoundError.code:
            return NotFoundError(what)
        return InvalidArgumentError(what)

    def _unavailable(self, message: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(message, service=self.service)


class PeerTools:
    """One connection's tool calls."""

    def __init__(self, peer: McpPeer, client: Client) -> None:
        self._peer = peer
        self._client = client

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The tool's structured answer; its error result raised as a platform error."""
        result = await self._client.call_tool(tool, dict(arguments))
        if result.is_error:
            raise self._peer._tool_error(tool, result)
        if result.structured_content is None:
            raise InvalidArgumentError(f"{self._peer.service} answered {tool} without structured content")
        return dict(result.structured_content)


class _Bearer(httpx2.Auth):
    """The token and the current trace context (`traceparent`), set on each request as it is
    sent, so neither is kept in the client's headers."""

    def __init__(self, token: SecretStr | None) -> None:
        self._token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self._token is not None:
            request.headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        request.headers.update(carrier)
        yield request


def _leaves(exc: BaseException) -> Generator[BaseException, None, None]:
    """The exceptions an exception group holds, however nested (the exception if it is none)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _status_code(status: int) -> int:
    """The JSON-RPC code the platform answers an HTTP status with."""
    if status in (401, 403):
        return AuthenticationError.jsonrpc_code
    if status == 429 or status >= 500:
        return UnavailableError.jsonrpc_code
    return InvalidArgumentError.jsonrpc_code
