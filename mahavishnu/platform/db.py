"""The database: one async SQLAlchemy engine, SQLite (embedded) or PostgreSQL, with Alembic.

SQLite runs in WAL mode with a busy timeout so the server and a CLI command
can share the file; a thread checkpoints its log, so that no commit pays for that
(`wal_checkpoints.py`). Only a `Database` opened with `create=True` (the server, migrations, a run)
makes a missing SQLite file; any other refuses with `NoDatabaseError` ("no database at PATH"),
so a command that only reads never answers "nothing" from an empty file it has just made.

PostgreSQL is used when a `postgresql://` URL is configured (driver asyncpg); an optional
schema keeps several deployments (or tests) apart in one database. Start-up refuses a schema
newer than this code, and upgrades an older one only when told to.

Each service brings its own Alembic tree as a `MigrationSet` (folder and version
table), so services share one database without sharing a migration history; the
tree's `env.py` is three lines around `run_migrations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mahavishnu.platform.errors import ConfigurationError, NotFoundError, UnavailableError
from mahavishnu.platform.settings import ROOT_MIGRATIONS, MigrationSet, PlatformSettings
from mahavishnu.platform.wal_checkpoints import AUTOCHECKPOINT_PAGES, WalCheckpointer

__all__ = ["Database", "MigrationSet", "NoDatabaseError", "SchemaState", "normalize_url", "run_migrations"]


class NoDatabaseError(NotFoundError):
    """The settings point at a SQLite file that does not exist, and this opening may not create it."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no database at {path}: nothing has been stored with these settings yet "
            "(`mahavishnu config show` names the settings file and data folder in use)"
        )
        self.path = path


def normalize_url(url: str) -> str:
    """Pick the async driver for a plain URL (postgresql:// → asyncpg, sqlite:// → aiosqlite)."""
    parsed = make_url(url)
    driver = {
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
    }
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


class Database:
    """Owns the engine and hands out sessions; the caller owns each transaction.

    `migrations` is the service's tree; None means a database without one (schema checks
    refuse). Its default, Mahavishnu's tree, serves the callers written before services had
    trees of their own (the workflow and ops commands, the bench); new code passes the set
    of its service, usually through `from_settings`.

    `create` says whether a missing SQLite file may be made: True for whoever owns the data (the
    server, a migration, a run), False for a command that only reads, which then gets a
    `NoDatabaseError` on its first connection instead of an empty database.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        migrations: MigrationSet | None = ROOT_MIGRATIONS,
        pool_min_size: int = 10,
        pool_max_size: int = 20,
        echo: bool = False,
        create: bool = True,
    ) -> None:
        self.url = normalize_url(url)
        self.schema = schema
        self.migrations = migrations
        self._pool = (pool_min_size, max(pool_max_size, pool_min_size))
        self.dialect = make_url(self.url).get_backend_name()
        self.create = create
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **self._engine_options())
        self._checkpointer: WalCheckpointer | None = None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if self.sqlite_path is not None:
                if not create:
                    event.listen(self.engine.sync_engine, "do_connect", _refuse_missing(self.sqlite_path))
                checkpointer = self._checkpointer = WalCheckpointer(self.sqlite_path)
                event.listen(self.engine.sync_engine, "connect", lambda *_: checkpointer.start())
                weakref.finalize(self, checkpointer.request_stop)  # a Database never disposed
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: PlatformSettings, *, create: bool = False) -> Database:
        """The service's database: its URL, schema, pool and migration tree, all from its settings.

        By default it opens only a database that exists (ops commands: backups, readiness);
        the code that owns the data (serving, migrating) passes `create=True`.
        """
        return cls(
            settings.effective_database_url,
            schema=settings.database_schema,
            migrations=settings.migrations,
            pool_min_size=settings.db_pool_min_size,
            pool_max_size=settings.db_pool_max_size,
            create=create,
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, when this is one (not in memory)."""
        database = make_url(self.url).database if self.dialect == "sqlite" else None
        return Path(database) if database and database != ":memory:" else None

    def _engine_options(self) -> dict[str, Any]:
        if self.dialect == "sqlite":
            if self.create and self.sqlite_path is not None:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {"connect_args": {"timeout": 30}}
        keep, most = self._pool
        return {
            "pool_pre_ping": True,
            "pool_size": keep,
            "max_overflow": most - keep,
            "connect_args": _schema_args(self.url, self.schema),
        }

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error.

        Connection failures surface as UnavailableError, so callers (and clients)
        see "the database is down", not a driver's traceback.
        """
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not exc.connection_invalidated and self._is_logic_error(exc):
                raise
            raise UnavailableError("the database is unavailable; try again shortly") from exc

    @staticmethod
    def _is_logic_error(exc: DBAPIError) -> bool:
        """Integrity and programming errors are bugs or conflicts, not an outage."""
        return type(exc).__name__ in {"IntegrityError", "ProgrammingError", "DataError"}

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)

    # --- migrations -------------------------------------------------------
    def _migration_set(self) -> MigrationSet:
        if self.migrations is None:
            raise ConfigurationError("this database has no migrations to check or apply")
        return self.migrations

    def _alembic_config(self) -> Config:
        migrations = self._migration_set()
        config = Config()
        config.set_main_option("script_location", str(migrations.location))
        config.attributes["database_url"] = self.url
        config.attributes["schema"] = self.schema
        config.attributes["version_table"] = migrations.version_table
        return config

    async def schema_state(self) -> SchemaState:
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        version_table = self._migration_set().version_table
        async with self.engine.connect() as conn:
            if self.schema and self.dialect == "postgresql":
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.commit()
            current = await conn.run_sync(_current_revision, version_table)
        return SchemaState(current=current, head=head)

    def known_revisions(self) -> set[str]:
        """Every schema revision this code can migrate to or from."""
        return {rev.revision for rev in ScriptDirectory.from_config(self._alembic_config()).walk_revisions()}

    async def upgrade(self) -> None:
        """Run Alembic to head (in a worker thread: Alembic drives its own event loop)."""
        await anyio.to_thread.run_sync(command.upgrade, self._alembic_config(), "head")

    async def downgrade(self, revision: str) -> None:
        """Step the schema back (`-1`, or a revision id), as rolling back a release needs."""
        try:
            await anyio.to_thread.run_sync(command.downgrade, self._alembic_config(), revision)
        except CommandError as exc:  # an unknown revision, or one ahead of the database
            raise ConfigurationError(f"cannot downgrade to {revision!r}: {exc}") from None

    async def ensure_schema(self, *, upgrade: bool) -> SchemaState:
        """Refuse a newer schema; bring an older one to head when `upgrade`, else refuse it too."""
        migrations = self._migration_set()
        state = await self.schema_state()
        if state.is_current:
            return state
        if state.current is not None and state.current not in self.known_revisions():
            raise ConfigurationError(
                f"the database schema ({state.current}) is newer than this version of {migrations.title} "
                f"understands (head {state.head}); upgrade {migrations.title} or restore a matching backup"
            )
        if not upgrade:
            raise ConfigurationError(
                f"the database schema is at {state.current or 'nothing'}, not {state.head}; "
                f"{migrations.upgrade_hint}"
            )
        await self.upgrade()
        return await self.schema_state()


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's `migrations/env.py`: run its revisions with what `Database` handed
    Alembic (URL, schema, version table).

    Autogenerate compares only the tables of `metadata`: the other services' tables (and their
    version tables) in the same database, and tables a migration makes by hand (SQLite's FTS5
    shadow tables), are no business of this tree.
    """
    from alembic import context

    config = context.config
    url: str = config.attributes["database_url"]
    schema: str | None = config.attributes.get("schema")
    version_table: str = config.attributes["version_table"]

    def own_tables_only(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        return not (type_ == "table" and reflected and compare_to is None)

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=True,  # SQLite alters tables by copying them
            include_object=own_tables_only,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, connect_args=_schema_args(url, schema))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())


def _schema_args(url: str, schema: str | None) -> dict[str, Any]:
    """Connection arguments that put PostgreSQL sessions in `schema` (nothing for SQLite)."""
    if schema and make_url(url).get_backend_name() == "postgresql":
        return {"server_settings": {"search_path": schema}}
    return {}


def _current_revision(conn: Connection, version_table: str) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": version_table}).get_current_revision()


def _refuse_missing(path: Path) -> Any:
    """A `do_connect` hook: SQLite would make the missing file; say there is none instead."""

    def check(*_: Any) -> None:
        if not path.exists():
            raise NoDatabaseError(path)

    return check


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")  # a thread checkpoints
    cursor.close()
