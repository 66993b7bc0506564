"""Log messages for the client that asked for them: `logging/setLevel` and `notifications/message`.

A client sets a level with `logging/setLevel`; from then on the messages a tool (or resource
read) logs through `client_log()` while serving *that caller's* requests reach it at or above
that level, as MCP log notifications on the request's own response stream. Another caller's
requests never carry them: a message travels only on the stream of the request that produced
it, and the level is remembered per caller.

The server is stateless (no session outlives a request), so "the caller" is the principal
(the token: subject, role, tag scope; with auth off, everyone is the one local principal).
Levels live in this process, in a bounded table (least recently set forgotten first); behind
several replicas, a client sets its level on the replica it reaches. On 2026-07-28+
connections there is no `logging/setLevel`: each request opts in through its `_meta` and the
SDK filters, so every level is passed to it.

A tool logs with one line, e.g. `await client_log().info("run finished", repo=name, status=s)`;
outside a request, or when nobody asked, the call costs a comparison and sends nothing.
Delivery needs a stream: over HTTP, a request answered with SSE (one carrying a progress
token); a plain JSON answer has no room for notifications.
"""

from __future__ import annotations

import contextvars
import warnings
from collections import OrderedDict
from typing import Any, Final, get_args

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import EmptyResult, LoggingLevel, RequestId, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mahavishnu.platform.auth import Principal, current_principal
from mahavishnu.platform.observability import get_logger

__all__ = ["ClientLog", "ClientLogBinding", "LogLevels", "client_log", "install_client_logging"]

LEVELS: Final[tuple[LoggingLevel, ...]] = get_args(LoggingLevel)
"""Severity-ascending (RFC 5424), as the SDK's literal declares them."""
_RANK: Final = {level: rank for rank, level in enumerate(LEVELS)}
_SILENT: Final = len(LEVELS)
"""A threshold above every level: the caller asked for nothing."""
MAX_CALLERS = 10_000
LOGGER_NAME = "mahavishnu"
log = get_logger("mahavishnu.client_logging")

# The SDK marks the logging capability deprecated for 2026-07-28; this module serves the
# handshake-era clients that still use it, on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=__name__)


class LogLevels:
    """The level each caller set, bounded: an endless stream of new tokens cannot grow it."""

    def __init__(self, max_callers: int = MAX_CALLERS) -> None:
        self._levels: OrderedDict[Principal, int] = OrderedDict()
        self._max = max_callers

    def set(self, principal: Principal, level: LoggingLevel) -> None:
        self._levels[principal] = _RANK[level]
        self._levels.move_to_end(principal)
        while len(self._levels) > self._max:
            self._levels.popitem(last=False)

    def threshold(self, principal: Principal) -> int:
        return self._levels.get(principal, _SILENT)

    def wants_logs(self, principal: Principal) -> bool:
        """Whether this caller set a level: its requests need an answer that can carry notifications."""
        return principal in self._levels


class ClientLog:
    """Sends log messages to the client of one request, at or above its threshold; never raises."""

    __slots__ = ("_request_id", "_session", "_threshold")

    def __init__(self, session: ServerSession | None, request_id: RequestId | None, threshold: int) -> None:
        self._session, self._request_id, self._threshold = session, request_id, threshold

    def enabled(self, level: LoggingLevel) -> bool:
        return self._session is not None and _RANK[level] >= self._threshold

    async def log(self, level: LoggingLevel, message: str, **fields: Any) -> None:
        """`message` and `fields` (JSON values) as one log notification, if the client wants it."""
        if self._session is None or _RANK[level] < self._threshold:
            return
        data = {"message": message, **fields}
        try:
            await self._session.send_log_message(level, data, LOGGER_NAME, self._request_id)
        except Exception as exc:  # a client gone mid-request must not fail the request
            log.debug("client_log_dropped", error=type(exc).__name__)

    async def debug(self, message: str, **fields: Any) -> None:
        await self.log("debug", message, **fields)

    async def info(self, message: str, **fields: Any) -> None:
        await self.log("info", message, **fields)

    async def warning(self, message: str, **fields: Any) -> None:
        await self.log("warning", message, **fields)

    async def error(self, message: str, **fields: Any) -> None:
        await self.log("error", message, **fields)


_NOBODY = ClientLog(None, None, _SILENT)
_current: contextvars.ContextVar[ClientLog] = contextvars.ContextVar("mahavishnu_client_log", default=_NOBODY)


def client_log() -> ClientLog:
    """The log of the request being served (a silent one outside requests)."""
    return _current.get()


class ClientLogBinding:
    """Server middleware: binds `client_log()` to the request's session and its caller's level."""

    def __init__(self, levels: LogLevels) -> None:
        self._levels = levels

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS  # the SDK filters by `_meta`
        threshold = 0 if modern else self._levels.threshold(current_principal())
        if ctx.request_id is None or threshold == _SILENT:  # nobody to tell: the silent default stays
            return await call_next(ctx)
        token = _current.set(ClientLog(ctx.session, ctx.request_id, threshold))
        try:
            return await call_next(ctx)
        finally:
            _current.reset(token)


def install_client_logging(server: MCPServer, levels: LogLevels) -> None:
    """Answer `logging/setLevel` (which advertises the `logging` capability) for `levels`."""

    async def set_level(_: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        levels.set(current_principal(), params.level)
        return EmptyResult()

    # MCPServer has no public hook for this handshake-era method; its low-level server has.
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
