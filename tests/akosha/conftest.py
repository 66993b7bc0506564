"""Akosha's store on SQLite and on PostgreSQL, migrated, with a key ring; the real server on
either, one per test module; tokens for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.reads import Reader
from mahavishnu.akosha.record_index import Tiering
from mahavishnu.akosha.settings import MIGRATIONS, AkoshaSettings
from mahavishnu.akosha.tiers import AgingPolicy
from mahavishnu.platform.auth import Role, issue_token
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.conftest import PG_URL, drop_schema, require_service
from tests.support.akosha import akosha_env, spawn_akosha
from tests.support.databases import migrated_database
from tests.support.server import SECRET, RunningServer, wait_ready

TOKEN = "akosha-api-token-for-the-tests-0123456789"
"""AKOSHA_API_TOKEN of the servers these tests start."""
MAX_BODY_BYTES = 256 * 1024
MAX_BATCH_RECORDS = 600


@pytest.fixture(params=["sqlite", "postgres"])
async def ak_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async for db in migrated_database(request.param, tmp_path, MIGRATIONS, "ak"):
        yield db


@pytest.fixture
def tiering(tmp_path: Path) -> Tiering:
    """The service's defaults: hot for 30 days, warm to 180, cold segments in the test's folder."""
    return Tiering(tmp_path / "cold", AgingPolicy(hot_days=30, warm_days=180))


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.parse(generate_key())


@pytest.fixture
def inbox(ak_database: Database, ring: KeyRing) -> Inbox:
    return Inbox(ak_database, ring, IngestMetrics(Metrics(prefix="akosha")), max_records=5000)


@pytest.fixture
def reader(ak_database: Database, ring: KeyRing) -> Reader:
    return Reader(ak_database, ring)


@dataclass(frozen=True)
class Akosha:
    """A running Akosha and where it keeps its data."""

    server: RunningServer
    folder: Path
    schema: str | None
    """Its PostgreSQL schema; None on SQLite (in `folder`)."""

    @property
    def ingest_url(self) -> str:
        return f"{self.server.base}/ingest/memories"

    def post(self, body: Any, token: str | None = TOKEN, **headers: str) -> httpx.Response:
        """One ingest request: `body` as JSON, or bytes as they are."""
        sent = {"Content-Type": "application/json", **headers}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.ingest_url, content=content, headers=sent, timeout=30)


def start_akosha(folder: Path, database: str, **extra: str) -> Akosha:
    """Akosha on `database` ("sqlite" or "postgres") with the tests' token, an auth secret and
    a key; `extra` on top."""
    settings = {
        "AKOSHA_API_TOKEN": TOKEN,
        "AKOSHA_AUTH_SECRET": SECRET,
        "AKOSHA_ENCRYPTION_KEY": generate_key(),
        "AKOSHA_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "AKOSHA_MAX_BATCH_RECORDS": str(MAX_BATCH_RECORDS),
    }
    schema = None
    if database == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"ak_{uuid.uuid4().hex[:12]}"
        settings.update({"POSTGRES_URL": PG_URL, "AKOSHA_DATABASE_SCHEMA": schema})
    server = spawn_akosha(folder, akosha_env(folder, **{**settings, **extra}))
    wait_ready(server)
    return Akosha(server, folder, schema)


def stop_akosha(akosha: Akosha) -> None:
    assert akosha.server.stop() == 0, akosha.server.log_path.read_text()[-3000:]
    if akosha.schema is not None:
        asyncio.run(drop_schema(akosha.schema))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def akosha(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Akosha]:
    """One real Akosha for the module (tests keep apart by using sources of their own)."""
    running = start_akosha(tmp_path_factory.mktemp("akosha"), request.param)
    yield running
    stop_akosha(running)


def token(role: Role, tags: Sequence[str] = (), subject: str = "reader") -> str:
    """A JWT for Akosha (`aud: akosha`), signed with the servers' secret."""
    settings = AkoshaSettings(auth_secret=SECRET)  # type: ignore[arg-type]
    return issue_token(settings, subject=subject, role=role, tags=tags, ttl_seconds=600)
