"""Akosha's migrations build exactly the tables its models describe, under its own version
table, on SQLite and PostgreSQL, and step down to nothing and up again."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from mahavishnu.akosha.models import Base
from mahavishnu.platform.db import Database


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "version_table": "alembic_version_akosha",
            "include_name": lambda name, kind, _: kind != "table" or name.startswith("akosha_"),
        },
    )
    return compare_metadata(context, Base.metadata)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_match_the_models(ak_database: Database) -> None:
    async with ak_database.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
        assert await connection.run_sync(_tables) == {
            "akosha_records",
            "akosha_outcomes",
            "akosha_vectors",
            "alembic_version_akosha",
        }


async def test_down_to_nothing_and_up_again(ak_database: Database) -> None:
    await ak_database.downgrade("base")
    async with ak_database.engine.connect() as connection:
        assert await connection.run_sync(_tables) == {"alembic_version_akosha"}
    await ak_database.upgrade()
    state = await ak_database.schema_state()
    assert state.is_current
    assert state.head == "akosha_0003"
    async with ak_database.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
