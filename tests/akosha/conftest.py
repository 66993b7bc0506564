"""Akosha's store on SQLite and on PostgreSQL, migrated, with a key ring; records as
Session-Buddy's pusher sends them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.reads import Reader
from mahavishnu.akosha.settings import MIGRATIONS
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.conftest import PG_URL, drop_schema, require_service


@pytest.fixture(params=["sqlite", "postgres"])
async def ak_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    schema = None
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'akosha.db'}", migrations=MIGRATIONS)
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"ak_{uuid.uuid4().hex[:12]}"
        db = Database(PG_URL, schema=schema, migrations=MIGRATIONS)
    await db.ensure_schema(upgrade=True)
    yield db
    await db.dispose()
    if schema is not None:
        await drop_schema(schema)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.parse(generate_key())


@pytest.fixture
def inbox(ak_database: Database, ring: KeyRing) -> Inbox:
    return Inbox(ak_database, ring, IngestMetrics(Metrics(prefix="akosha")), max_records=5000)


@pytest.fixture
def reader(ak_database: Database, ring: KeyRing) -> Reader:
    return Reader(ak_database, ring)
