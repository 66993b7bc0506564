"""`mahavishnu readiness --service session-buddy` checks what Session-Buddy needs beyond the
platform: its encryption key (present, well formed, no old keys left over) and its packaged
embedding model (present, the pinned file)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.memories import Limits, Memories, NewMemory
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.vault import open_vault
from tests.support.session_buddy import session_buddy_env


def _readiness(tmp_path: Path, **env: str) -> dict[str, dict[str, Any]]:
    values = session_buddy_env(tmp_path, **env)
    asyncio.run(_migrated(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mahavishnu",
            "readiness",
            "--service",
            "session-buddy",
            "--json",
            "--min-score",
            "0",
        ],
        env=values,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


async def _migrated(tmp_path: Path) -> None:
    db = Database.from_settings(SessionBuddySettings(data_dir=tmp_path), create=True)
    await db.upgrade()
    await db.dispose()


def test_a_strong_key_and_the_packaged_model_pass(tmp_path: Path) -> None:
    checks = _readiness(tmp_path, SESSION_ENCRYPTION_KEY=generate_key())
    assert checks["encryption_key"]["status"] == "pass"
    assert checks["embedding_model"]["status"] == "pass"
    assert "all-MiniLM-L6-v2" in checks["embedding_model"]["reason"]
    assert "manifest" not in checks


@pytest.mark.parametrize(
    ("env", "status", "words"),
    [
        ({}, "warn", "development keeps a key"),
        ({"SESSION_BUDDY_ENV": "production"}, "fail", "development keeps a key"),
        ({"SESSION_ENCRYPTION_KEY": "c2hvcnQ="}, "fail", "SESSION_ENCRYPTION_KEY"),
        ({"SESSION_ENCRYPTION_KEY": f"{generate_key()},{generate_key()}"}, "warn", "older key"),
    ],
)
def test_key_problems_are_named(tmp_path: Path, env: dict[str, str], status: str, words: str) -> None:
    check = _readiness(tmp_path, **env)["encryption_key"]
    assert check["status"] == status, check
    assert words in check["reason"]
    assert "c2hvcnQ" not in json.dumps(check)  # the key is never echoed


def test_an_unknown_model_fails_naming_the_known_ones(tmp_path: Path) -> None:
    check = _readiness(tmp_path, SESSION_ENCRYPTION_KEY=generate_key(), EMBEDDING_MODEL="gpt-huge")[
        "embedding_model"
    ]
    assert check["status"] == "fail"
    assert "all-minilm-l6-v2" in check["fix"]


def test_the_search_index_is_checked_against_the_store(tmp_path: Path) -> None:
    key = generate_key()

    async def fill() -> None:
        db = Database.from_settings(SessionBuddySettings(data_dir=tmp_path), create=True)
        await db.upgrade()
        vault = await open_vault(db, KeyRing.parse(key))
        store = Memories(db, vault, Limits(2000, 8), tenant="acme", author="ann")
        for text in ("pin httpx below 0.28", "E4012 means the token expired", "tabs in Makefiles"):
            await store.store(NewMemory(text))
        await db.dispose()

    asyncio.run(fill())
    check = _readiness(tmp_path, SESSION_ENCRYPTION_KEY=key)["search_index"]
    assert check["status"] == "pass", check
    assert "matches 3 memories; 3 of 3 memories wait for a vector" in check["reason"]
    with sqlite3.connect(tmp_path / "session-buddy.db") as conn:  # a damaged restore, say
        conn.execute(
            "DELETE FROM session_buddy_memory_terms "
            "WHERE rowid = (SELECT min(rowid) FROM session_buddy_memory_terms)"
        )
    check = _readiness(tmp_path, SESSION_ENCRYPTION_KEY=key)["search_index"]
    assert check["status"] == "fail", check
    assert "1 of 3 memories" in check["reason"]
