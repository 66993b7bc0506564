"""The Alembic migrations build exactly the tables the models describe, on SQLite and PostgreSQL,
and step down and up again cleanly."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from mahavishnu.orchestrator.workflows.models import Base
from mahavishnu.platform.db import Database

SEARCH_OBJECTS = {"repo_runs_fts", "ix_repo_runs_search"}
"""Full-text search lives in the migrations only (FTS5 tables, a GIN expression index)."""


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def _names(diff: Any) -> set[str]:
    """Names of the tables and indexes a difference is about (FTS5 shadow tables included)."""
    found = set()
    for item in diff if isinstance(diff, list) else [diff]:
        for part in item if isinstance(item, tuple) else (item,):
            name = getattr(part, "name", None)
            if isinstance(name, str):
                found.add(name.split("_fts_")[0] + "_fts" if "_fts_" in name else name)
    return found


async def _unexpected_differences(database: Database) -> list[Any]:
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    return [d for d in differences if not _names(d) <= SEARCH_OBJECTS]


async def test_migrations_match_the_models(database: Database) -> None:
    assert await _unexpected_differences(database) == []


def _schema_objects(connection: Connection) -> set[tuple[str, str]]:
    """Every table, index and trigger, including what only the migrations create (search)."""
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        )
    else:
        rows = connection.exec_driver_sql(
            "SELECT 'index', indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "UNION ALL SELECT 'table', tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    return {(kind, name) for kind, name in rows}


async def test_downgrade_to_the_previous_revision_and_back(database: Database) -> None:
    async with database.engine.connect() as connection:
        before = await connection.run_sync(_schema_objects)
    assert ("trigger", "repo_runs_fts_insert") in before or ("index", "ix_repo_runs_search") in before
    head = (await database.schema_state()).head
    await database.downgrade("-1")
    assert (await database.schema_state()).current not in (None, head)
    await database.upgrade()
    assert (await database.schema_state()).is_current
    assert await _unexpected_differences(database) == []
    async with database.engine.connect() as connection:
        assert await connection.run_sync(_schema_objects) == before  # search survived the round trip
