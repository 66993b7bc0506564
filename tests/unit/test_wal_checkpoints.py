"""SQLite's write-ahead log is checkpointed by a thread of the `Database`, not by the commits: a
commit never pays for copying the log back (see bench/memory_speed.py for what that did to
Session-Buddy's store latency)."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from mahavishnu.platform.db import Database, NoDatabaseError
from mahavishnu.platform.wal_checkpoints import AUTOCHECKPOINT_PAGES


async def _write_blobs(db: Database, count: int, size: int = 65_536) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS blobs (data BLOB)"))
    for _ in range(count):
        async with db.session() as session:
            await session.execute(text("INSERT INTO blobs VALUES (randomblob(:size))"), {"size": size})


async def test_the_thread_copies_the_log_into_the_file_while_commits_leave_it(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(f"sqlite:///{path}", migrations=None)
    try:
        # 2.5 MB through the log: less than the commits' own threshold (64 MB), and than SQLite's
        # default one (4 MB), so only the thread can have copied it into the database file.
        await _write_blobs(db, 40)
        async with db.session() as session:
            threshold = (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
        assert threshold == AUTOCHECKPOINT_PAGES
        deadline = time.monotonic() + 30
        while path.stat().st_size < 2_500_000 and time.monotonic() < deadline:  # noqa: ASYNC110  # a file, not an event
            await asyncio.sleep(0.05)
        assert path.stat().st_size >= 2_500_000, "the log reached the database file"
        assert db._checkpointer is not None
        assert db._checkpointer.running
    finally:
        await db.dispose()
    assert not db._checkpointer.running, "dispose ends the thread"


async def test_a_database_that_may_not_be_made_starts_no_thread_and_makes_no_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    db = Database(f"sqlite:///{path}", migrations=None, create=False)
    with pytest.raises(NoDatabaseError):
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
    assert db._checkpointer is not None
    assert not db._checkpointer.running
    assert not path.exists()
    await db.dispose()


async def test_the_thread_of_a_database_never_disposed_ends_with_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}", migrations=None)
    await _write_blobs(db, 1, size=16)
    assert db._checkpointer is not None
    thread = db._checkpointer._thread
    assert thread is not None
    assert thread.is_alive()
    await db.engine.dispose()  # the connections, not the Database's own dispose
    del db
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
