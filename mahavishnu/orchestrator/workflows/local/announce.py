"""New work, told to every engine sharing the PostgreSQL database (LISTEN/NOTIFY).

A trigger reaches one replica, whose engine is woken at once (`LocalEngine.submit`); the other
replicas' engines would find the runs only at their next poll (`engine_poll_seconds`), while the
first one's slots already work through them. On PostgreSQL the submitting engine sends a
notification after the commit and every engine listening on the database runs a cycle at once,
so replicas start sharing a workflow within a round trip. It is only a wake-up: a lost
notification (a listener reconnecting, SQLite, a database without it) costs a poll interval,
never a run, because the queue in the tables stays the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import get_logger

__all__ = ["CHANNEL", "READY_SECONDS", "announce", "listen"]

log = get_logger("mahavishnu.engine")

CHANNEL = "mahavishnu_work"
"""One channel per database; the payload names the schema, so deployments in other schemas of
the same database ignore each other's work."""
READY_SECONDS = 5.0
"""Longest an engine's start waits for its listener (a database that slow is polled instead)."""
RECONNECT_SECONDS = 5.0
"""Pause before the listener opens a lost connection again (polls cover the gap)."""


def _listens(db: Database) -> bool:
    return db.dialect == "postgresql"


async def announce(db: Database) -> None:
    """Wake every engine listening on this database (PostgreSQL; elsewhere nothing)."""
    if not _listens(db):
        return
    try:
        async with db.session() as session:
            await session.execute(text("SELECT pg_notify(:channel, :schema)"), _payload(db))
    except Exception:
        log.warning("work_announce_failed", exc_info=True)  # the others find it at their poll


async def listen(db: Database, wake: Callable[[], None], ready: asyncio.Event) -> None:
    """Call `wake` whenever an engine announces work on this database, until cancelled; `ready`
    is set once it listens (at once where there is nothing to listen to).

    Holds one connection of the pool for its life; a lost connection is opened again."""
    if not _listens(db):
        ready.set()
        return
    schema = _payload(db)["schema"]

    def heard(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == schema:
            wake()

    while True:
        try:
            async with db.engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                if driver is None:
                    raise RuntimeError("no driver connection to listen on")
                closed = asyncio.Event()
                driver.add_termination_listener(lambda _connection, ended=closed: ended.set())
                await driver.add_listener(CHANNEL, heard)
                ready.set()
                try:
                    await closed.wait()
                finally:
                    with contextlib.suppress(Exception):
                        await driver.remove_listener(CHANNEL, heard)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("work_listener_failed", exc_info=True)
        await asyncio.sleep(RECONNECT_SECONDS)


def _payload(db: Database) -> dict[str, str]:
    return {"channel": CHANNEL, "schema": db.schema or "public"}
