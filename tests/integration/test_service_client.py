"""The service client against a real HTTP server on loopback that answers from a script."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mahavishnu.platform.errors import ConfigurationError, InvalidArgumentError, NotFoundError
from mahavishnu.platform.service_client import (
    BreakerPolicy,
    RequestRetryPolicy,
    RequestTimeouts,
    ServiceClient,
    ServiceUnavailableError,
)

TOKEN = "s3cret-service-token"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    hold: threading.Event | None = None
    """Answer only once this is set (a slow peer)."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Peer:
    """A loopback HTTP server that answers with the scripted replies in order (then 200) and
    records every request it receives."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.arrived = threading.Event()
        self.holds: list[threading.Event] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.answer(self)

            def do_POST(self) -> None:
                peer.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {key.lower(): value for key, value in handler.headers.items()}
        self.seen.append(Seen(handler.command, handler.path, headers, body, time.monotonic()))
        reply = self.script.pop(0) if self.script else Reply()
        self.arrived.set()
        if reply.hold is not None:
            reply.hold.wait(timeout=30)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)

    def hold(self) -> threading.Event:
        event = threading.Event()
        self.holds.append(event)
        return event

    def stop(self) -> None:
        for event in self.holds:
            event.set()
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records the waits the retry loop asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


FAST_RETRY = RequestRetryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.stop()


@pytest.fixture
async def make_client(peer: Peer) -> AsyncIterator[Callable[..., ServiceClient]]:
    clients: list[ServiceClient] = []

    def make(**options: Any) -> ServiceClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("base_url", peer.url)
        client = ServiceClient("akosha", token=TOKEN, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_sends_the_bearer_token_and_json(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    client = make_client()
    response = await client.post("/v1/ingest", json={"record": "r1", "version": 2})
    assert response.json() == {"ok": True}
    [seen] = peer.seen
    assert (seen.method, seen.path) == ("POST", "/v1/ingest")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen.body) == {"record": "r1", "version": 2}
    assert TOKEN not in repr(client)


async def test_traceparent_continues_the_callers_trace(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    client = make_client(tracer=tracer)
    with tracer.start_as_current_span("push outbox") as outer:
        await client.get("/v1/status")
    trace_id = format(outer.get_span_context().trace_id, "032x")
    version, header_trace, parent_id, _flags = peer.seen[0].headers["traceparent"].split("-")
    assert (version, header_trace) == ("00", trace_id)
    [call] = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert call.context is not None
    assert parent_id == format(call.context.span_id, "016x"), "the peer's spans hang under the call's span"
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id
    assert call.attributes is not None
    assert call.attributes["http.response.status_code"] == 200


async def test_retries_503_then_succeeds(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    peer.script = [Reply(503), Reply(503), Reply(200)]
    sleeps = Sleeps()
    response = await make_client(sleep=sleeps).post("/v1/ingest", json={})
    assert response.status_code == 200
    assert len(peer.seen) == 3
    assert len(sleeps.waits) == 2
    assert all(0 < wait <= 0.05 for wait in sleeps.waits), "backoff within the policy's bounds"


async def test_gives_up_after_max_attempts(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    peer.script = [Reply(502), Reply(504), Reply(503)]
    with pytest.raises(ServiceUnavailableError) as caught:
        await make_client(sleep=Sleeps()).post("/v1/ingest", json={})
    assert len(peer.seen) == 3
    assert caught.value.retryable
    assert "HTTP 503" in caught.value.message
    assert TOKEN not in caught.value.message


async def test_retry_after_is_honoured(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    peer.script = [Reply(503, headers={"Retry-After": "1"}), Reply(200)]
    await make_client().get("/v1/status")  # real sleeping
    first, second = peer.seen
    assert second.at - first.at >= 0.9, "waited about the second the peer asked for, not the 10 ms backoff"


async def test_retry_after_as_an_http_date(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    peer.script = [Reply(429, headers={"Retry-After": when}), Reply(200)]
    sleeps = Sleeps()
    await make_client(sleep=sleeps).get("/v1/status")
    [wait] = sleeps.waits
    assert 1 < wait <= 3


async def test_retry_after_beyond_the_cap_fails_at_once(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    peer.script = [Reply(429, headers={"Retry-After": "120"})]
    sleeps = Sleeps()
    policy = RequestRetryPolicy(max_attempts=5, max_retry_after_seconds=5)
    with pytest.raises(ServiceUnavailableError) as caught:
        await make_client(retry=policy, sleep=sleeps).post("/v1/ingest", json={})
    assert caught.value.retry_after_seconds == 120, "the caller can reschedule for when the peer asked"
    assert len(peer.seen) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidArgumentError),
        (409, InvalidArgumentError),
        (422, InvalidArgumentError),
        (404, NotFoundError),
        (401, ConfigurationError),
        (403, ConfigurationError),
        (500, ServiceUnavailableError),
    ],
)
async def test_no_retry_on_other_errors(
    peer: Peer, make_client: Callable[..., ServiceClient], status: int, error: type[Exception]
) -> None:
    peer.script = [Reply(status), Reply(200)]
    with pytest.raises(error) as caught:
        await make_client(sleep=Sleeps()).post("/v1/ingest", json={})
    assert len(peer.seen) == 1
    assert f"HTTP {status}" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_connect_errors_are_retried(make_client: Callable[..., ServiceClient]) -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    with pytest.raises(ServiceUnavailableError) as caught:
        await make_client(base_url=f"http://127.0.0.1:{port}", sleep=sleeps).get("/v1/status")
    assert "cannot connect to akosha" in caught.value.message
    assert len(sleeps.waits) == FAST_RETRY.max_attempts - 1


async def test_read_timeout_is_a_clear_error_and_not_retried(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    peer.script = [Reply(hold=peer.hold()), Reply(200)]
    client = make_client(timeouts=RequestTimeouts(read_seconds=0.2), sleep=Sleeps())
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.post("/v1/ingest", json={})
    assert "did not answer POST /v1/ingest in time (ReadTimeout)" in caught.value.message
    assert len(peer.seen) == 1, "the request may have been processed: not sent twice"


BREAKER = BreakerPolicy(failure_threshold=2, cooldown_seconds=30)
NO_RETRY = RequestRetryPolicy(max_attempts=1)


def state_of(client: ServiceClient) -> str:
    """Read afresh (a plain attribute read would be narrowed by the type checker across calls)."""
    return client.breaker.state


async def open_breaker(peer: Peer, client: ServiceClient) -> None:
    peer.script = [Reply(503), Reply(503)]
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            await client.get("/v1/status")
    assert state_of(client) == "open"


async def test_breaker_opens_and_fails_fast(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    clock = FakeClock()
    client = make_client(breaker=BREAKER, retry=NO_RETRY, clock=clock)
    await open_breaker(peer, client)
    clock.now += 10
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.get("/v1/status")
    assert len(peer.seen) == 2, "an open circuit sends nothing"
    assert "circuit open" in caught.value.message
    assert caught.value.retry_after_seconds == pytest.approx(20)


async def test_breaker_open_during_retries_stops_them(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    peer.script = [Reply(503)] * 5
    client = make_client(breaker=BREAKER, retry=RequestRetryPolicy(max_attempts=5), sleep=Sleeps())
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.get("/v1/status")
    assert len(peer.seen) == 2
    assert "circuit open" in caught.value.message


async def test_half_open_probe_closes_the_circuit(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    clock = FakeClock()
    client = make_client(breaker=BREAKER, retry=NO_RETRY, clock=clock)
    await open_breaker(peer, client)
    clock.now += 31
    assert state_of(client) == "half_open"
    assert (await client.get("/v1/status")).status_code == 200
    assert state_of(client) == "closed"
    await client.get("/v1/status")
    assert len(peer.seen) == 4


async def test_failed_probe_opens_the_circuit_again(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    clock = FakeClock()
    client = make_client(breaker=BREAKER, retry=NO_RETRY, clock=clock)
    await open_breaker(peer, client)
    clock.now += 31
    peer.script = [Reply(503)]
    with pytest.raises(ServiceUnavailableError):
        await client.get("/v1/status")
    assert state_of(client) == "open"
    with pytest.raises(ServiceUnavailableError, match="circuit open"):
        await client.get("/v1/status")
    assert len(peer.seen) == 3


async def test_half_open_lets_only_one_probe_through(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    clock = FakeClock()
    client = make_client(breaker=BREAKER, retry=NO_RETRY, clock=clock)
    await open_breaker(peer, client)
    clock.now += 31
    release = peer.hold()
    peer.script = [Reply(hold=release)]
    peer.arrived.clear()
    probe = asyncio.create_task(client.get("/v1/status"))
    assert await asyncio.to_thread(peer.arrived.wait, 10)
    with pytest.raises(ServiceUnavailableError, match="circuit open"):
        await client.get("/v1/status")
    release.set()
    assert (await probe).status_code == 200
    assert state_of(client) == "closed"
    assert len(peer.seen) == 3


async def test_cancelled_probe_frees_the_slot(peer: Peer, make_client: Callable[..., ServiceClient]) -> None:
    clock = FakeClock()
    client = make_client(breaker=BREAKER, retry=NO_RETRY, clock=clock)
    await open_breaker(peer, client)
    clock.now += 31
    peer.script = [Reply(hold=peer.hold())]
    peer.arrived.clear()
    probe = asyncio.create_task(client.get("/v1/status"))
    assert await asyncio.to_thread(peer.arrived.wait, 10)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert state_of(client) == "half_open"
    assert (await client.get("/v1/status")).status_code == 200
    assert len(peer.seen) == 4


async def test_client_errors_do_not_trip_the_breaker(
    peer: Peer, make_client: Callable[..., ServiceClient]
) -> None:
    client = make_client(breaker=BREAKER, retry=NO_RETRY)
    peer.script = [Reply(503), Reply(400), Reply(503)]
    for error in (ServiceUnavailableError, InvalidArgumentError, ServiceUnavailableError):
        with pytest.raises(error):
            await client.get("/v1/status")
    assert state_of(client) == "closed", "the 400 proved the peer alive: failures are not consecutive"
    await client.get("/v1/status")
    assert len(peer.seen) == 4


def test_policies_refuse_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        RequestRetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        BreakerPolicy(failure_threshold=0)
