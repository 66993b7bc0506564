"""A Session-Buddy database on SQLite and on PostgreSQL, migrated, with an open vault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.memories import Limits, Memories
from mahavishnu.session_buddy.sessions import SessionLimits, Sessions
from mahavishnu.session_buddy.settings import MIGRATIONS
from mahavishnu.session_buddy.vault import Vault, open_vault
from tests.support.databases import migrated_database

LIMITS = Limits(max_content_chars=2000, max_tags=8)


@pytest.fixture(params=["sqlite", "postgres"])
async def sb_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async for db in migrated_database(request.param, tmp_path, MIGRATIONS, "sb"):
        yield db


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.parse(generate_key())


@pytest.fixture
async def vault(sb_database: Database, ring: KeyRing) -> Vault:
    return await open_vault(sb_database, ring)


@pytest.fixture
def memories(sb_database: Database, vault: Vault) -> Memories:
    return Memories(sb_database, vault, LIMITS, tenant="acme", author="ann")


@pytest.fixture
def other_tenant(sb_database: Database, vault: Vault) -> Memories:
    return Memories(sb_database, vault, LIMITS, tenant="globex", author="gus")


@pytest.fixture
def sessions(sb_database: Database, vault: Vault) -> Sessions:
    return Sessions(
        sb_database,
        vault,
        SessionLimits(max_text_chars=2000, max_state_bytes=1024),
        tenant="acme",
        author="ann",
    )


@pytest.fixture
def other_sessions(sb_database: Database, vault: Vault) -> Sessions:
    return Sessions(sb_database, vault, SessionLimits(max_text_chars=2000), tenant="globex", author="gus")
