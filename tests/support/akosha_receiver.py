"""A stand-in for Akosha's ingest endpoint until Akosha exists: a real HTTP server on loopback
that checks the bearer token and the shape of each batch, records every batch it accepts and
keeps one record per (source, memory_id, version), as Akosha will. A test can make it refuse
(`fail_with`: a 503 with Retry-After, a 4xx), hold its answer after recording a batch (a sender
that dies before hearing back), or stop it (connection refused) and start it again on the same
port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INGEST_PATH = "/ingest/memories"
IDENTITY = ("source", "tenant", "memory_id", "version", "op")

Key = tuple[str, str, int]


@dataclass(frozen=True)
class Refusal:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that was cancelled and left: nothing to report


class AkoshaReceiver:
    def __init__(self, token: str) -> None:
        self.token = token
        self.batches: list[dict[str, Any]] = []
        """Every batch accepted, in arrival order (repeats included)."""
        self.records: dict[Key, dict[str, Any]] = {}
        """One record per (source, memory_id, version): the first that arrived."""
        self.refused = 0
        self.refusal: Refusal | None = None
        self.hold: threading.Event | None = None
        self.recorded = threading.Event()
        """Set whenever a batch was recorded (a test clears it before waiting)."""
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_with(self, refusal: Refusal | None) -> None:
        """Refuse every batch so (None: accept again)."""
        with self._lock:
            self.refusal = refusal

    def arrivals(self) -> Iterator[dict[str, Any]]:
        """Every record accepted, in arrival order, repeats included."""
        for batch in list(self.batches):
            yield from batch["records"]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.path != INGEST_PATH:
            return _reply(handler, 404, {"error": "no such endpoint"})
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return _reply(handler, 401, {"error": "bad token"})
        with self._lock:
            refusal = self.refusal
            if refusal is not None:
                self.refused += 1
        if refusal is not None:
            return _reply(handler, refusal.status, {"error": "refused"}, refusal.headers)
        try:
            batch = json.loads(body)
            problem = _problem(batch)
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            return _reply(handler, 422, {"error": problem})
        with self._lock:
            self.batches.append(batch)
            fresh = 0
            for record in batch["records"]:
                key = (record["source"], record["memory_id"], record["version"])
                if key not in self.records:
                    self.records[key] = record
                    fresh += 1
        self.recorded.set()
        if self.hold is not None:
            self.hold.wait(timeout=30)
        return _reply(handler, 200, {"accepted": fresh, "duplicates": len(batch["records"]) - fresh})


def _problem(batch: Any) -> str | None:
    """What is wrong with a batch, as Akosha would refuse it (None: nothing)."""
    if not isinstance(batch, dict) or not isinstance(batch.get("source"), str):
        return "a batch is {source, records}"
    records = batch.get("records")
    if not isinstance(records, list) or not records:
        return "records: a non-empty list"
    for record in records:
        if not isinstance(record, dict) or any(key not in record for key in IDENTITY):
            return f"every record names {', '.join(IDENTITY)}"
        if record["source"] != batch["source"] or record["op"] not in ("upsert", "tombstone"):
            return "a record's source is the batch's; its op is upsert or tombstone"
    return None


def _reply(
    handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
