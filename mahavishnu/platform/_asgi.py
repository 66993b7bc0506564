"""Small helpers for writing pure-ASGI middleware: JSON responses, body replay, and a nesting
depth check that runs on the raw bytes before any parser sees them."""

from __future__ import annotations

import itertools
import json
import operator
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

__all__ = ["header", "json_nesting_exceeds", "jsonrpc_error", "replay_body", "send_json"]

_STRUCTURE_BYTES = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE_BYTES)
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_PAREN_RUNS = re.compile(rb"\(+|\)+")
_CLOSE = ord(")")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_json(send: Send, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def jsonrpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive callable that yields the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
