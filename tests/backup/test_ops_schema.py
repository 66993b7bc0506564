"""Ops own `backup_events`: their migration tree (version table `alembic_version_ops`) puts it in
any service's database, adopts the one Mahavishnu's revision 0002 made in older databases (rows
kept), and neither tree undoes the other. SQLite and PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.ops.schema import ops_database, upgrade_ops_schema
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.settings import ROOT_MIGRATIONS, MigrationSet
from tests.conftest import PG_URL, drop_schema, require_service
from tests.support.echo_service.settings import MIGRATIONS as ECHO_MIGRATIONS
from tests.support.echo_service.settings import EchoSettings

DatabaseFor = Callable[[MigrationSet], Database]


@pytest.fixture(params=["sqlite", "postgres"])
async def database_for(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseFor]:
    """One empty database (a SQLite file, or a fresh PostgreSQL schema), seen through any tree."""
    schema = None
    if request.param == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        schema = f"t_{uuid.uuid4().hex[:12]}"
    url = PG_URL if schema else f"sqlite:///{tmp_path / 'shared.db'}"
    opened: list[Database] = []

    def make(migrations: MigrationSet) -> Database:
        opened.append(Database(url, schema=schema, migrations=migrations, pool_min_size=1, pool_max_size=2))
        return opened[-1]

    yield make
    for db in opened:
        await db.dispose()
    if schema:
        await drop_schema(schema)


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def _scalar(db: Database, sql: str) -> object:
    async with db.session() as session:
        return await session.scalar(text(sql))


async def test_a_service_without_the_table_gets_it_from_ops(database_for: DatabaseFor) -> None:
    echo = database_for(ECHO_MIGRATIONS)
    await echo.ensure_schema(upgrade=True)
    assert "backup_events" not in await _tables(echo)

    state = await upgrade_ops_schema(echo)
    assert state.current == state.head == "ops_0001"
    assert {"backup_events", "alembic_version_ops"} <= await _tables(echo)
    assert (await echo.schema_state()).current == "echo_0001", "Echo's own revision is left alone"
    assert (await upgrade_ops_schema(echo)).is_current  # and again: nothing to do


async def test_an_older_mahavishnu_database_keeps_its_rows(database_for: DatabaseFor) -> None:
    mahavishnu = database_for(ROOT_MIGRATIONS)
    await mahavishnu.ensure_schema(upgrade=True)  # 0002 made backup_events before ops had a tree
    async with mahavishnu.session() as session:
        await session.execute(
            text(
                "INSERT INTO backup_events (id, kind, archive, ok, detail, created_at) "
                "VALUES ('e1', 'create', 'mahavishnu-x.tar.gz', true, 'before ops', CURRENT_TIMESTAMP)"
            )
        )
    assert "alembic_version_ops" not in await _tables(mahavishnu)

    assert (await upgrade_ops_schema(mahavishnu)).current == "ops_0001"
    assert await _scalar(mahavishnu, "SELECT detail FROM backup_events") == "before ops"
    assert (await mahavishnu.schema_state()).is_current


async def test_ops_first_then_mahavishnu_and_back_down(database_for: DatabaseFor) -> None:
    """A database still at 0001 when ops ran: Mahavishnu's 0002 finds the table and keeps it;
    stepping Mahavishnu back below 0002 leaves ops' table (and its rows) in place."""
    mahavishnu = database_for(ROOT_MIGRATIONS)
    await mahavishnu.ensure_schema(upgrade=True)
    await mahavishnu.downgrade("0001")
    assert "backup_events" not in await _tables(mahavishnu)  # 0002's downgrade, before ops owned it

    await upgrade_ops_schema(mahavishnu)
    async with mahavishnu.session() as session:
        await session.execute(
            text(
                "INSERT INTO backup_events (id, kind, archive, ok, detail, created_at) "
                "VALUES ('e2', 'verify', 'mahavishnu-y.tar.gz', true, 'kept', CURRENT_TIMESTAMP)"
            )
        )
    assert (await mahavishnu.ensure_schema(upgrade=True)).is_current
    await mahavishnu.downgrade("0001")
    assert await _scalar(mahavishnu, "SELECT detail FROM backup_events") == "kept"
    assert (await ops_database(mahavishnu).schema_state()).current == "ops_0001"


async def test_a_newer_ops_schema_is_refused(database_for: DatabaseFor) -> None:
    echo = database_for(ECHO_MIGRATIONS)
    await upgrade_ops_schema(echo)
    async with echo.session() as session:
        await session.execute(text("UPDATE alembic_version_ops SET version_num = 'ops_9999'"))
    with pytest.raises(ConfigurationError, match="newer than this version of Mahavishnu ops"):
        await upgrade_ops_schema(echo)


async def test_the_first_backup_of_a_service_migrates_ops_tables(
    database_for: DatabaseFor, tmp_path: Path
) -> None:
    echo = database_for(ECHO_MIGRATIONS)
    await echo.ensure_schema(upgrade=True)
    settings = EchoSettings(data_dir=tmp_path / "var", database_url=echo.url, database_schema=echo.schema)
    manager = BackupManager(settings, echo)
    backup = await manager.create()
    event = await manager.last_success("create")
    assert event is not None
    assert event.archive == backup.name
    assert await _scalar(echo, "SELECT version_num FROM alembic_version_ops") == "ops_0001"
