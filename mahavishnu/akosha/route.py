"""`POST /ingest/memories` and `POST /ingest/outcomes`: the plain HTTP endpoints Session-Buddy's
and Mahavishnu's pushers send their batches to; one endpoint class, told its path, the batch's
model and what takes it in (an `Intake`).

Pure ASGI, in the order of `McpGate`, cheapest checks first: Host and Origin (421/403, the
platform's DNS-rebinding guard, as for `/mcp`), method (405), media type (415),
sender and budget (`ingest_gate`: 401, 403, 429), body size (413, on the declared length or
while reading), nesting depth and JSON (400), the batch's fields (422, each problem named by
its path), then the store (200 with the counts, after the commit; 503 while the database is
down). Every refusal is a JSON object `{"error": "..."}`; bad input never gets a 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.types import Receive, Scope, Send

from mahavishnu.akosha.ingest_gate import IngestGate, Refusal
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.platform import InvalidArgumentError, Principal, UnavailableError
from mahavishnu.platform._asgi import header, read_body, send_json
from mahavishnu.platform.arguments import describe_errors
from mahavishnu.platform.jsonrpc import json_nesting_exceeds
from mahavishnu.platform.origin import HostOriginGuard
from mahavishnu.platform.request_context import RequestInfo, request_info

__all__ = ["INGEST_PATH", "OUTCOMES_PATH", "IngestEndpoint", "Intake"]

INGEST_PATH = "/ingest/memories"
OUTCOMES_PATH = "/ingest/outcomes"
_JSON = "application/json"

BatchT = TypeVar("BatchT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Intake(Generic[BatchT]):
    """What one endpoint takes in: at which path, as which model, handed to what (which answers
    once the batch is stored, or raises InvalidArgumentError or UnavailableError)."""

    path: str
    model: type[BatchT]
    take: Callable[[BatchT], Awaitable[BaseModel]]


class IngestEndpoint(Generic[BatchT]):
    def __init__(
        self,
        gate: IngestGate,
        intake: Intake[BatchT],
        metrics: IngestMetrics,
        *,
        guard: HostOriginGuard | None,
        max_body_bytes: int,
        max_json_depth: int,
    ) -> None:
        self._gate = gate
        self._guard = guard
        self._intake = intake
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info.get() or RequestInfo("n/a", _peer(scope))
        if self._guard is not None and not await self._guard.admit(scope, send, info):
            self._metrics.refused.labels("origin").inc()
            return
        refusal = _method_or_media(scope, self._intake.path)
        admitted: Principal | Refusal = refusal or await self._gate.admit(scope, info.client)
        if isinstance(admitted, Refusal):
            await self._refuse(send, info, admitted)
            return
        info.principal = admitted.subject
        body = await read_body(scope, receive, self._max_body)
        if body is None:
            await self._refuse(
                send, info, Refusal(413, f"request body over {self._max_body} bytes", "too_large")
            )
            return
        batch = self._parse(body)
        if isinstance(batch, Refusal):
            await self._refuse(send, info, batch)
            return
        try:
            result = await self._intake.take(batch)
        except InvalidArgumentError as exc:
            await self._refuse(send, info, Refusal(422, exc.message, "invalid"))
            return
        except UnavailableError as exc:
            await self._refuse(send, info, Refusal(503, exc.message, "unavailable", {"retry-after": "5"}))
            return
        await send_json(send, 200, result.model_dump())

    def _parse(self, body: bytes) -> BatchT | Refusal:
        if json_nesting_exceeds(body, self._max_depth):
            return Refusal(400, f"the body is JSON nested deeper than {self._max_depth} levels", "malformed")
        try:
            return self._intake.model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors()
            if any(error["type"] == "json_invalid" for error in errors):
                return Refusal(400, "the body is not valid JSON", "malformed")
            return Refusal(422, f"invalid batch: {describe_errors(_without_tags(errors))}", "invalid")

    async def _refuse(self, send: Send, info: RequestInfo, refusal: Refusal) -> None:
        info.rejected = refusal.reason
        self._metrics.refused.labels(refusal.reason).inc()
        await send_json(send, refusal.status, {"error": refusal.message}, refusal.headers.items())


def _method_or_media(scope: Scope, path: str) -> Refusal | None:
    if scope["method"] != "POST":
        return Refusal(405, f"{path} takes a batch by POST only", "method", {"allow": "POST"})
    media = (header(scope, b"content-type") or _JSON).partition(";")[0].strip().lower()
    if media != _JSON:
        return Refusal(415, f"a batch is sent as {_JSON}", "media_type")
    return None


def _without_tags(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """`records[0].upsert.version` → `records[0].version`: the union's branch is the record's
    own `op`, which the message need not repeat."""
    cleaned: list[ErrorDetails] = []
    for error in errors:
        loc = error["loc"]
        kept = tuple(
            part
            for index, part in enumerate(loc)
            if not (part in ("upsert", "tombstone") and index > 0 and isinstance(loc[index - 1], int))
        )
        cleaned.append({**error, "loc": kept})
    return cleaned


def _peer(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"
