"""The database: one async SQLAlchemy engine, SQLite (embedded) or PostgreSQL, with Alembic.

SQLite runs in WAL mode with a busy timeout so the server and a CLI command
can share the file. PostgreSQL is used when a `postgresql://` URL is
configured (driver asyncpg); an optional schema keeps several deployments
(or tests) apart in one database. Start-up refuses a schema newer than this
code, and upgrades an older one only when told to.
"""

from __future__ import annotations

import contextlib
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
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mahavishnu.platform.errors import ConfigurationError, UnavailableError

__all__ = ["Database", "SchemaState", "normalize_url"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


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
    """Owns the engine and hands out sessions; the caller owns each transaction."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.schema = schema
        self.dialect = make_url(self.url).get_backend_name()
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **self._engine_options())
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def _engine_options(self) -> dict[str, Any]:
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            return {"connect_args": {"timeout": 30}}
        options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}
        if self.schema:
            options["connect_args"] = {"server_settings": {"search_path": self.schema}}
        return options

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

    # --- migrations -------------------------------------------------------
    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["database_url"] = self.url
        config.attributes["schema"] = self.schema
        return config

    async def schema_state(self) -> SchemaState:
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        async with self.engine.connect() as conn:
            if self.schema and self.dialect == "postgresql":
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.commit()
            current = await conn.run_sync(_current_revision)
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
        state = await self.schema_state()
        if state.is_current:
            return state
        if state.current is not None and state.current not in self.known_revisions():
            raise ConfigurationError(
                f"the database schema ({state.current}) is newer than this version of Mahavishnu "
                f"understands (head {state.head}); upgrade Mahavishnu or restore a matching backup"
            )
        if not upgrade:
            raise ConfigurationError(
                f"the database schema is at {state.current or 'nothing'}, not {state.head}; "
                "run `mahavishnu db upgrade`"
            )
        await self.upgrade()
        return await self.schema_state()


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
