"""JSON-RPC 2.0 as MCP takes it over HTTP: one message per body, checked before the SDK sees it.

`parse_message` turns a request body into one message or a `Refusal` (the access log reason
and the JSON-RPC error to answer with). Two checks run first and cheaply:

- the nesting depth, judged on the raw bytes without parsing (`json_nesting_exceeds`), so a
  body of thousands of `[` never reaches a recursive parser;
- the envelope (`jsonrpc`, `method`, `id`, `params`, `_meta.progressToken`), which the SDK
  would otherwise accept in the wrong shapes or answer with pydantic's text under the wrong code.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

from mcp_types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

__all__ = [
    "MAX_PROGRESS_TOKEN_CHARS",
    "Refusal",
    "is_request_id",
    "json_nesting_exceeds",
    "jsonrpc_error",
    "parse_message",
]

MAX_PROGRESS_TOKEN_CHARS = 128
"""A progress token is echoed in every progress notification, so it is kept short."""
_MAX_PROGRESS_INT = 2**63

_STRUCTURE_BYTES = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE_BYTES)
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_PAREN_RUNS = re.compile(rb"\(+|\)+")
_CLOSE = ord(")")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a body is not one acceptable message: the access log reason and the error to send."""

    reason: str
    request_id: Any
    code: int
    text: str


def jsonrpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def parse_message(body: bytes, max_depth: int) -> dict[str, Any] | Refusal:
    """The body as one JSON-RPC message MCP accepts, or why it is refused."""
    if json_nesting_exceeds(body, max_depth):
        return Refusal(
            "too_deep", None, PARSE_ERROR, f"Parse error: JSON nested deeper than {max_depth} levels"
        )
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: belt and braces
        return Refusal("parse_error", None, PARSE_ERROR, "Parse error: the body is not valid JSON")
    if isinstance(message, list):
        return Refusal(
            "batch",
            None,
            INVALID_REQUEST,
            "Batch requests are not supported: send one JSON-RPC message per request",
        )
    if not isinstance(message, dict):
        return Refusal(
            "invalid_request", None, INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object"
        )
    problem = _envelope_problem(message)
    if problem is None:
        return message
    code, text = problem
    request_id = message.get("id") if is_request_id(message.get("id")) else None
    reason = "invalid_request" if code == INVALID_REQUEST else "invalid_params"
    return Refusal(reason, request_id, code, text)


def is_request_id(value: object) -> bool:
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
    if "id" in message and not is_request_id(message["id"]):
        return INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'
    return _params_problem(message.get("params"))


def _response_problem(message: dict[str, Any]) -> tuple[int, str] | None:
    """A message without a method must be a response: a result or an error for a request id."""
    request_id = message.get("id")
    if isinstance(message.get("result"), dict) and is_request_id(request_id):
        return None
    if isinstance(message.get("error"), dict) and (request_id is None or is_request_id(request_id)):
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


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether a JSON text nests arrays/objects deeper than `limit`, judged without parsing it.

    Parsers recurse once per level, so a body of 5,000 `[` ends in a RecursionError (or worse)
    inside whichever parser meets it first. This check is linear and runs on the bytes only,
    with C-speed bytes operations: a typical request (at most `limit` brackets) costs two
    `count` calls; a 1 MiB body a few milliseconds. It is exact for well-formed JSON and never
    under-counts what a parser would recurse into on a malformed one.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    return _nesting_bound(_bracket_skeleton(body), limit) > limit


def _bracket_skeleton(body: bytes) -> bytes:
    """The brackets outside strings, as `(` and `)`.

    Escaped backslashes go first, then escaped quotes, so every `"` left delimits a string.
    Adjacent `""` (an empty string, or one string's end and the next one's start with no
    bracket between) are dropped before splitting, which keeps the split cheap for the usual
    bodies full of short strings; what remains alternates outside/inside at each `"`.
    """
    compact = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    compact = compact.replace(b'""', b"")
    outside = b"".join(compact.split(b'"')[::2]) if b'"' in compact else compact
    return outside.translate(_AS_PARENS)


def _nesting_bound(skeleton: bytes, limit: int) -> int:
    """An upper bound of the depth of a `(`/`)` sequence, exact when it is balanced.

    Each pass deletes every `()`: the innermost pairs, which lowers the depth by exactly one
    (by at most one when unbalanced). Passes stop when they stop paying (they remove under an
    eighth of what is left); the rest is measured from its runs of `(` and `)`, of which few
    remain by then, so neither long flat arrays nor long deep chains cost much.
    """
    passes = 0
    while skeleton and passes <= limit:
        shorter = skeleton.replace(b"()", b"")
        removed = len(skeleton) - len(shorter)
        if not removed:
            break
        passes += 1
        skeleton = shorter
        if removed * 8 < len(skeleton) + removed:
            break
    return passes + _run_depth(skeleton)


def _run_depth(skeleton: bytes) -> int:
    """The highest point of a `(`/`)` walk, from its alternating runs: the walk peaks at the end
    of a run of `(`, where it stands at all `(` so far minus all `)` so far."""
    runs = _PAREN_RUNS.findall(skeleton)
    if not runs:
        return 0
    lengths = [len(run) for run in runs]
    if runs[0][0] == _CLOSE:
        lengths.insert(0, 0)
    opened = itertools.accumulate(lengths[0::2])
    closed = itertools.chain((0,), itertools.accumulate(lengths[1::2]))
    return int(max(map(operator.sub, opened, closed)))
