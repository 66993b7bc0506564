"""Ops' own tables, migrated by ops in every service's database.

Ops record what happens to a service (today: `backup_events`, the backup log) in that
service's database, beside the service's tables, but the tables are ops': their Alembic tree is
`mahavishnu/ops/migrations` with its own version table, `alembic_version_ops`, so it runs the
same way whichever service owns the database and never touches a service's revisions.

`upgrade_ops_schema` brings the tree to head. Ops run it themselves before their first write
(a `BackupManager` does), and a served service runs it at start (`attach_backups`); the
composition root may call it after a service's `db upgrade` too.
"""

from __future__ import annotations

from pathlib import Path

from mahavishnu.platform.db import Database, SchemaState
from mahavishnu.platform.settings import MigrationSet

__all__ = ["OPS_MIGRATIONS", "upgrade_ops_schema"]

OPS_MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_ops",
    title="Mahavishnu ops",
    upgrade_hint="run any `mahavishnu backup` command, or start the service",
)


def ops_database(db: Database) -> Database:
    """The same database as `db` (URL and schema), seen through ops' migration tree."""
    return Database(
        db.url,
        schema=db.schema,
        migrations=OPS_MIGRATIONS,
        create=db.create,
        pool_min_size=1,
        pool_max_size=2,
    )


async def upgrade_ops_schema(db: Database) -> SchemaState:
    """Bring ops' tables in `db`'s database to head; refuse (ConfigurationError) a newer schema."""
    ops_db = ops_database(db)
    try:
        return await ops_db.ensure_schema(upgrade=True)
    finally:
        await ops_db.dispose()
