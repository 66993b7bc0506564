"""A service's database on SQLite (a file in the test's folder) or on PostgreSQL (a schema of
its own, dropped afterwards), migrated to the newest revision: what each service's fixtures
parametrise over, so every store test runs on both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from mahavishnu.platform import MigrationSet
from mahavishnu.platform.db import Database
from tests.conftest import PG_URL, drop_schema, require_service


async def migrated_database(
    kind: str, folder: Path, migrations: MigrationSet, name: str
) -> AsyncIterator[Database]:
    """`kind` is "sqlite" or "postgres"; `name` names the file or prefixes the schema."""
    schema = None
    if kind == "sqlite":
        db = Database(f"sqlite:///{folder / f'{name}.db'}", migrations=migrations)
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:12]}"
        db = Database(PG_URL, schema=schema, migrations=migrations)
    await db.ensure_schema(upgrade=True)
    yield db
    await db.dispose()
    if schema is not None:
        await drop_schema(schema)
