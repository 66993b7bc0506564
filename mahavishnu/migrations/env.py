"""Alembic environment: async engine, URL and schema handed in by `Database`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from mahavishnu.orchestrator.workflows.models import Base

config = context.config
target_metadata = Base.metadata


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Leave the FTS5 search table and its shadow tables out of autogenerate: the migration owns them."""
    return not (type_ == "table" and name is not None and name.startswith("repo_runs_fts"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.attributes["database_url"]
    schema = config.attributes.get("schema")
    connect_args = (
        {"server_settings": {"search_path": schema}} if schema and url.startswith("postgresql") else {}
    )
    engine = create_async_engine(url, connect_args=connect_args)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


asyncio.run(_main())
