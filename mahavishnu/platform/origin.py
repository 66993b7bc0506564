"""DNS-rebinding protection for /mcp: the Host and Origin headers, parsed and matched exactly.

The gate asks the guard first, so a forged Host/Origin request neither spends a caller's rate
budget nor reaches authentication: 421 for a Host, 403 for an Origin that is not allowed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from mcp_types import INVALID_REQUEST
from starlette.types import Scope, Send

from mahavishnu.platform._asgi import header, send_json
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.jsonrpc import jsonrpc_error
from mahavishnu.platform.request_context import RequestInfo

__all__ = ["HostOriginGuard"]

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
