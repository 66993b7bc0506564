"""A backup of Session-Buddy holds its database as stored: sealed. A canary planted in a memory,
its tags and project, a session and a checkpoint appears in no byte of the archive or of any
file in it, and neither does the key."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.memories import Limits, Memories, NewMemory
from mahavishnu.session_buddy.sessions import SessionLimits, Sessions
from mahavishnu.session_buddy.settings import SessionBuddySettings
from mahavishnu.session_buddy.vault import open_vault

CANARY = "canary-backup-0c4e7a"


async def _fill(tmp_path: Path, key: str) -> None:
    db = Database.from_settings(SessionBuddySettings(data_dir=tmp_path, encryption_key=key), create=True)
    await db.upgrade()
    vault = await open_vault(db, KeyRing.parse(key))
    memories = Memories(db, vault, Limits(max_content_chars=1000, max_tags=4), tenant="acme", author="ann")
    await memories.store(NewMemory(f"secret {CANARY}", tags=[CANARY], project=CANARY))
    sessions = Sessions(db, vault, SessionLimits(max_text_chars=1000), tenant="acme", author="ann")
    started = await sessions.start(CANARY, goal=CANARY)
    await sessions.checkpoint(started.session.id, CANARY, {"note": CANARY})
    await sessions.end(started.session.id, CANARY)
    await db.dispose()


def test_a_backup_of_session_buddy_holds_nothing_readable(tmp_path: Path) -> None:
    key = generate_key()
    asyncio.run(_fill(tmp_path, key))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "MAHAVISHNU_"))},
        "SESSION_BUDDY_DATA_DIR": str(tmp_path),
        "SESSION_BUDDY_CONFIG": str(tmp_path / "absent.yaml"),
        "SESSION_ENCRYPTION_KEY": key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "backup", "create", "--service", "session-buddy", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    archive = (tmp_path / "backups" / json.loads(done.stdout)["name"]).read_bytes()
    for secret in (CANARY.encode(), key.encode()):
        assert secret not in archive
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            assert any(m.name.endswith(".db") or "database" in m.name for m in members), tar.getnames()
            for member in members:
                content = tar.extractfile(member)
                assert content is not None
                assert secret not in content.read(), member.name
