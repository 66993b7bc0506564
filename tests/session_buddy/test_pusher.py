"""The pusher against a recording stand-in for Akosha (a real HTTP server on loopback), on SQLite
and PostgreSQL: every version and tombstone arrives, in order, once per (source, memory,
version); nothing is lost while Akosha is down, refuses, or the pusher dies mid-push; the
backlog metrics follow."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.push_loop import Backoff
from mahavishnu.platform.service_client import BreakerPolicy, RequestRetryPolicy, ServiceClient
from mahavishnu.session_buddy import pusher as pusher_module
from mahavishnu.session_buddy.memories import Memories, NewMemory
from mahavishnu.session_buddy.metrics import MemoryMetrics
from mahavishnu.session_buddy.models import OutboxEntry
from mahavishnu.session_buddy.pusher import Pusher, push_to_akosha
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.vault import Vault
from tests.support.akosha_receiver import IDENTITY, AkoshaReceiver, Refusal

TOKEN = "akosha-ingest-token-for-the-tests"
SOURCE = "laptop-1"
FAST = Backoff(initial_seconds=0.01, max_seconds=0.1)


class _Stop(Exception):
    """Ends a pusher's run from its sleep, once a test has seen what it waits for."""


@pytest.fixture
def receiver() -> Iterator[AkoshaReceiver]:
    server = AkoshaReceiver(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(prefix="test")


@pytest.fixture
def memory_metrics(metrics: Metrics) -> MemoryMetrics:
    return MemoryMetrics(metrics)


@pytest.fixture
async def make_pusher(
    sb_database: Database, vault: Vault, receiver: AkoshaReceiver, memory_metrics: MemoryMetrics
) -> AsyncIterator[Callable[..., Pusher]]:
    """Pushers to the receiver; the client does not retry by itself (the pusher's backoff is
    what is tested) and its circuit cools down at once."""
    clients: list[ServiceClient] = []

    def make(**options: Any) -> Pusher:
        client = ServiceClient(
            "akosha",
            receiver.url,
            token=TOKEN,
            retry=RequestRetryPolicy(max_attempts=1),
            breaker=BreakerPolicy(cooldown_seconds=0.01),
        )
        clients.append(client)
        options.setdefault("backoff", FAST)
        options.setdefault("poll_seconds", 0.02)
        return Pusher(sb_database, vault, client, memory_metrics, source=SOURCE, **options)

    yield make
    for client in clients:
        await client.aclose()


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def lag(metrics: Metrics) -> float:
    return sample(metrics, "session_buddy_outbox_lag")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` (bounded only so a broken test fails instead of hanging)."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"gave up waiting until {what}")


async def drain(pusher: Pusher) -> int:
    settled = 0
    while done := await pusher.push_once():
        settled += done
    return settled


async def queued(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


def arrived(receiver: AkoshaReceiver) -> list[tuple[str, str, int, str]]:
    return [(r["tenant"], r["memory_id"], r["version"], r["op"]) for r in receiver.arrivals()]


@contextlib.asynccontextmanager
async def running(pusher: Pusher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(pusher.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, _Stop):
            await task


async def test_every_version_and_tombstone_arrives_once_in_order(
    memories: Memories,
    other_tenant: Memories,
    receiver: AkoshaReceiver,
    make_pusher: Callable[..., Pusher],
    metrics: Metrics,
    sb_database: Database,
) -> None:
    first = (
        await memories.store(NewMemory("Use uv for installs", tags=["tooling"], project="mahavishnu"))
    ).memory
    edited = await memories.update(first.id, {"content": "Use uv for every install"})
    theirs = (await other_tenant.store(NewMemory("Globex deploys on Fridays"))).memory
    await memories.update(first.id, {"tags": ["tooling", "python"]})
    second = (await memories.store(NewMemory("Pin numpy below 3"))).memory
    await memories.delete(first.id)
    pusher = make_pusher(batch_size=2)
    assert await drain(pusher) == 6
    assert arrived(receiver) == [
        ("acme", first.id, 1, "upsert"),
        ("acme", first.id, 2, "upsert"),
        ("globex", theirs.id, 1, "upsert"),
        ("acme", first.id, 3, "upsert"),
        ("acme", second.id, 1, "upsert"),
        ("acme", first.id, 4, "tombstone"),
    ]
    assert len(receiver.records) == 6  # each (source, memory, version) once
    assert [len(batch["records"]) for batch in receiver.batches] == [2, 2, 2]
    assert {batch["source"] for batch in receiver.batches} == {SOURCE}
    version_2 = receiver.records[(SOURCE, first.id, 2)]
    assert version_2["content"] == "Use uv for every install"
    assert (version_2["tags"], version_2["project"]) == (["tooling"], "mahavishnu")
    assert version_2["updated_at"] == edited.updated_at.isoformat()
    assert receiver.records[(SOURCE, theirs.id, 1)]["content"] == "Globex deploys on Fridays"
    assert set(receiver.records[(SOURCE, first.id, 4)]) == set(IDENTITY)  # a tombstone: ids only
    assert await drain(pusher) == 0
    assert len(receiver.batches) == 3  # nothing sent twice
    assert await queued(sb_database) == 0
    await pusher.measure()
    assert lag(metrics) == 0
    assert sample(metrics, "session_buddy_outbox_pushed_total") == 6


async def test_nothing_is_lost_while_akosha_is_down(
    memories: Memories,
    receiver: AkoshaReceiver,
    make_pusher: Callable[..., Pusher],
    metrics: Metrics,
    sb_database: Database,
) -> None:
    receiver.stop()  # connection refused
    async with running(make_pusher(batch_size=3)):
        ids = [(await memories.store(NewMemory(f"fact number {i}"))).memory.id for i in range(7)]
        await until(
            lambda: sample(metrics, "session_buddy_outbox_push_failures_total") >= 3 and lag(metrics) == 7,
            "the failures are counted and the backlog measured while Akosha is down",
        )
        assert sample(metrics, "session_buddy_outbox_oldest_age_seconds") > 0
        assert receiver.batches == []
        receiver.start()  # back, on the same port
        await until(lambda: len(receiver.records) == 7 and lag(metrics) == 0, "the backlog drains")
    assert [memory_id for _, memory_id, _, _ in arrived(receiver)] == ids
    assert sample(metrics, "session_buddy_outbox_oldest_age_seconds") == 0
    assert sample(metrics, "session_buddy_outbox_pushed_total") == 7
    assert await queued(sb_database) == 0


@pytest.mark.parametrize(("retry_after", "cap", "expected"), [("7", 300.0, 7.0), ("600", 30.0, 30.0)])
async def test_a_503_waits_what_retry_after_asks_within_the_cap(
    memories: Memories,
    receiver: AkoshaReceiver,
    make_pusher: Callable[..., Pusher],
    retry_after: str,
    cap: float,
    expected: float,
) -> None:
    stored = (await memories.store(NewMemory("pushed once Akosha is ready"))).memory
    receiver.fail_with(Refusal(503, {"Retry-After": retry_after}))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            receiver.fail_with(None)
        if receiver.records:
            raise _Stop

    pusher = make_pusher(backoff=Backoff(initial_seconds=0.01, max_seconds=cap), sleep=sleep)
    with pytest.raises(_Stop):
        await pusher.run()
    assert waits[:2] == [expected, expected]
    assert receiver.refused == 2
    assert list(receiver.records) == [(SOURCE, stored.id, 1)]


@pytest.mark.parametrize(
    ("refusal", "advice"),
    [("422", "fix the cause"), ("308", "fix the cause"), ("token", "AKOSHA_API_TOKEN")],
)
async def test_a_refused_batch_is_an_error_at_every_try_and_nothing_is_skipped(
    memories: Memories,
    receiver: AkoshaReceiver,
    make_pusher: Callable[..., Pusher],
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
    advice: str,
) -> None:
    logged = _Recorder()
    monkeypatch.setattr(pusher_module, "log", logged)
    ids = [(await memories.store(NewMemory(f"decision {i}"))).memory.id for i in range(3)]
    if refusal == "token":
        receiver.token = "the token Akosha was given instead"
    else:  # a 4xx, or a redirect (to where Akosha moved, say): not an acceptance either
        receiver.fail_with(Refusal(int(refusal), {"Location": "https://elsewhere.example/ingest"}))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the operator fixes the cause
            receiver.token = TOKEN
            receiver.fail_with(None)
        if len(receiver.records) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        await make_pusher(
            batch_size=2, backoff=Backoff(initial_seconds=1.0, max_seconds=3.0), sleep=sleep
        ).run()
    stuck = [fields for event, fields in logged.errors if event == "akosha_push_stuck"]
    assert len(stuck) == 3
    assert all(advice in fields["advice"] and fields["records"] == 2 for fields in stuck)
    assert {fields["first_entry"] for fields in stuck} == {stuck[0]["first_entry"]}  # the same batch
    for number, wait in enumerate(waits[:3]):  # exponential with jitter, capped
        ceiling = min(3.0, 2.0**number)
        assert ceiling / 2 <= wait <= ceiling
    assert sample(metrics, "session_buddy_outbox_push_failures_total") == 3
    assert [memory_id for _, memory_id, _, _ in arrived(receiver)] == ids
    assert ("akosha_push_resumed", {"after_failures": 3}) in logged.infos


async def test_a_pusher_that_dies_mid_push_loses_nothing(
    memories: Memories, receiver: AkoshaReceiver, make_pusher: Callable[..., Pusher], sb_database: Database
) -> None:
    ids = [(await memories.store(NewMemory(f"step {i} of the release"))).memory.id for i in range(5)]
    first = make_pusher(batch_size=2)
    assert await first.push_once() == 2
    receiver.hold = threading.Event()  # Akosha records the next batch, then the sender dies
    receiver.recorded.clear()
    dying = asyncio.create_task(first.push_once())
    await until(receiver.recorded.is_set, "the batch reached Akosha")
    dying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    receiver.hold.set()
    receiver.hold = None
    assert await queued(sb_database) == 3  # the batch Akosha got was never settled
    restarted = make_pusher(batch_size=2)  # a fresh process on the same database
    assert await drain(restarted) == 3
    sent = [memory_id for _, memory_id, _, _ in arrived(receiver)]
    assert sent == ids[:2] + ids[2:4] + ids[2:4] + ids[4:]  # only the interrupted batch again
    assert sorted(memory_id for _, memory_id, _ in receiver.records) == sorted(ids)


async def test_the_service_pushes_with_its_settings_and_token(
    memories: Memories,
    receiver: AkoshaReceiver,
    sb_database: Database,
    vault: Vault,
    memory_metrics: MemoryMetrics,
    tmp_path: Any,
) -> None:
    settings = SessionBuddySettings(
        data_dir=tmp_path, akosha_url=receiver.url + "/", akosha_token=TOKEN, source_name="ci-box"
    )
    stored = (await memories.store(NewMemory("pushed by the service's own loop"))).memory
    task = asyncio.create_task(push_to_akosha(sb_database, vault, settings, memory_metrics))
    try:
        await until(lambda: bool(receiver.records), "the service's pusher delivered")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert list(receiver.records) == [("ci-box", stored.id, 1)]


async def test_without_an_akosha_url_nothing_is_pushed_and_the_outbox_keeps_recording(
    memories: Memories, sb_database: Database, vault: Vault, memory_metrics: MemoryMetrics, tmp_path: Any
) -> None:
    await memories.store(NewMemory("kept for when Akosha arrives"))
    settings = SessionBuddySettings(data_dir=tmp_path)
    await asyncio.wait_for(push_to_akosha(sb_database, vault, settings, memory_metrics), timeout=10)
    assert await queued(sb_database) == 1


class _Recorder:
    """Stands in for the pusher's logger: what it said, by level."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, dict[str, Any]]] = []
        self.infos: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.infos.append((event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        pass

    def debug(self, event: str, **fields: Any) -> None:
        pass
