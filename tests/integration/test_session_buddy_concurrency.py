"""Session-Buddy under concurrent writers, for real: 8 processes x 500 store_memory calls over
HTTP (a share retried with the same idempotency key) make exactly 4,000 memories on SQLite and
on PostgreSQL; and after `kill -9` in the middle of a burst, every acknowledged write is there."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.crypto import generate_key
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.conftest import PG_URL, drop_schema, require_service
from tests.support.client import call_tool
from tests.support.server import SECRET, RunningServer, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy

WRITERS = 8
STORES = 500
TENANT = "load"


def _token() -> str:
    settings = SessionBuddySettings(auth_secret=SECRET)
    return issue_token(settings, subject="writer", role="operator", ttl_seconds=3600, tenant=TENANT)


def _serve(data: Path, env: dict[str, str]) -> RunningServer:
    running = spawn_session_buddy(data, env)
    wait_ready(running, timeout=60)
    return running


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    values = session_buddy_env(tmp_path)
    values.update(
        {
            "SESSION_BUDDY_AUTH_SECRET": SECRET,
            "SESSION_ENCRYPTION_KEY": generate_key(),
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "RATE_LIMIT_PER_HOUR": "10000000",
            "RATE_LIMIT_BURST": "1000000",
        }
    )
    schema = None
    if request.param == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"sbload_{uuid.uuid4().hex[:10]}"
        values.update({"POSTGRES_URL": PG_URL, "SESSION_BUDDY_DATABASE_SCHEMA": schema})
    yield values
    if schema is not None:
        asyncio.run(drop_schema(schema))


def _writers(
    url: str, tmp_path: Path, count: int, stores: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.memory_writer",
                url,
                _token(),
                f"w{i}",
                str(stores),
                str(concurrency),
                "10",
                str(tmp_path / f"acked-{i}.jsonl"),
            ]
        )
        for i in range(count)
    ]


def _acked(tmp_path: Path) -> dict[tuple[str, int], set[str]]:
    found: dict[tuple[str, int], set[str]] = {}
    for path in tmp_path.glob("acked-*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            found.setdefault((path.stem, entry["index"]), set()).add(entry["id"])
    return found


def _stored_ids(server: RunningServer) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        arguments = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = call_tool(server.url, "list_memories", arguments, token=_token()).json()["result"]
        ids |= {m["id"] for m in page["structuredContent"]["memories"]}
        cursor = page["structuredContent"]["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.timeout(900)
def test_eight_writers_make_exactly_four_thousand_memories(env: dict[str, str], tmp_path: Path) -> None:
    server = _serve(tmp_path, env)
    try:
        writers = _writers(server.url, tmp_path, WRITERS, STORES, concurrency=25)
        assert [w.wait(timeout=600) for w in writers] == [0] * WRITERS
        acked = _acked(tmp_path)
        assert len(acked) == WRITERS * STORES
        assert all(len(ids) == 1 for ids in acked.values()), "a retry made a second memory"
        stats = call_tool(server.url, "memory_stats", {}, token=_token()).json()["result"][
            "structuredContent"
        ]
        assert stats["total"] == WRITERS * STORES
        assert _stored_ids(server) == {next(iter(ids)) for ids in acked.values()}
    finally:
        assert server.stop() == 0


@pytest.mark.timeout(600)
def test_every_acknowledged_write_survives_kill_9(env: dict[str, str], tmp_path: Path) -> None:
    server = _serve(tmp_path, env)
    writers = _writers(server.url, tmp_path, 4, 400, concurrency=10)
    try:
        deadline = time.monotonic() + 120
        while sum(1 for _ in _acked(tmp_path)) < 200:
            assert time.monotonic() < deadline, "the writers acknowledged too little"
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
        for writer in writers:
            writer.wait(timeout=300)
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    acked = {next(iter(ids)) for ids in _acked(tmp_path).values()}
    restarted = _serve(tmp_path, env)
    try:
        stored = _stored_ids(restarted)
    finally:
        assert restarted.stop() == 0
    assert acked <= stored, f"{len(acked - stored)} acknowledged memories are missing"
