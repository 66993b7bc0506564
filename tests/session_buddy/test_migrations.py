"""Session-Buddy's migrations build exactly the tables its models describe, on SQLite and
PostgreSQL, and step down to nothing and up again."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from mahavishnu.platform.db import Database
from mahavishnu.session_buddy.models import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "version_table": "alembic_version_session_buddy",
            "include_name": lambda name, kind, _: kind != "table" or name.startswith("session_buddy_"),
        },
    )
    return compare_metadata(context, Base.metadata)


def _tables(connection: Connection) -> set[str]:
    return {t for t in inspect(connection).get_table_names() if t.startswith("session_buddy_")}


async def test_migrations_match_the_models(sb_database: Database) -> None:
    async with sb_database.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_down_to_nothing_and_up_again(sb_database: Database) -> None:
    async with sb_database.engine.connect() as connection:
        before = await connection.run_sync(_tables)
    assert before == set(Base.metadata.tables)
    await sb_database.downgrade("base")
    async with sb_database.engine.connect() as connection:
        assert await connection.run_sync(_tables) == set()
    await sb_database.upgrade()
    async with sb_database.engine.connect() as connection:
        assert await connection.run_sync(_tables) == before
        assert await connection.run_sync(_differences) == []
