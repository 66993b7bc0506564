"""What one HTTP request has told the pipeline so far, for its access log line.

The request observer creates a `RequestInfo` per request and sets it in `request_info`; the
gate, the Host/Origin guard and the tool wrapper fill it in as they learn more.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["RequestInfo", "request_info"]


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
