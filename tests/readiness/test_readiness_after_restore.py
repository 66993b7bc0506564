"""Readiness tells the truth after a restore: verifying a backup leaves a record beside the
archive, so restoring an older copy of the database (whose backup log predates the
verification) does not make readiness say "no backup has been verified yet".
SQLite and PostgreSQL (the shared `database` fixture: a fresh schema per test)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.ops.readiness import run_readiness
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.db import Database


async def _verified_check(settings: MahavishnuSettings) -> tuple[str, str]:
    report = await run_readiness(settings, url="http://127.0.0.1:9")
    check = next(c for c in report.checks if c.name == "backup_verified")
    return check.status, check.reason


async def _verify_events_in_database(database: Database) -> int:
    async with database.session() as session:
        count = await session.scalar(text("SELECT count(*) FROM backup_events WHERE kind = 'verify'"))
    return int(count or 0)


async def test_a_verification_survives_restoring_an_older_backup(database: Database, tmp_path: Path) -> None:
    settings = MahavishnuSettings(
        data_dir=tmp_path / "var", database_url=database.url, database_schema=database.schema
    )
    manager = BackupManager(settings, database)
    older = await manager.create()  # its snapshot holds no verification
    newer = await manager.create()
    assert (await manager.verify(newer.name)).ok
    assert await _verified_check(settings) == ("pass", f"last verification passed ({newer.name})")

    await manager.restore(older.name)
    assert await _verify_events_in_database(database) == 0, "the restored database forgot it"
    assert await _verified_check(settings) == ("pass", f"last verification passed ({newer.name})")
    assert [b.verified for b in await manager.backups()][-2:] == [True, None]

    # The record beside the archive is what carries it: without it, readiness would not know.
    for record in (tmp_path / "var" / "backups").glob("*.verified-*.json"):
        record.unlink()
    status, reason = await _verified_check(settings)
    assert (status, reason) == ("warn", "no backup has been verified yet")


async def test_a_failed_verification_survives_too_with_its_reason(database: Database, tmp_path: Path) -> None:
    settings = MahavishnuSettings(
        data_dir=tmp_path / "var", database_url=database.url, database_schema=database.schema
    )
    manager = BackupManager(settings, database)
    older = await manager.create()
    newer = await manager.create()
    archive = tmp_path / "var" / "backups" / newer.name
    archive.write_bytes(archive.read_bytes()[:-64])  # damaged after it was written
    assert not (await manager.verify(newer.name)).ok
    await manager.restore(older.name)
    status, reason = await _verified_check(settings)
    assert status == "fail"
    assert reason.startswith("last verification failed: ")
    assert len(reason) > len("last verification failed: ") + 5


async def test_pruning_an_archive_removes_its_records(database: Database, tmp_path: Path) -> None:
    settings = MahavishnuSettings(
        data_dir=tmp_path / "var",
        database_url=database.url,
        database_schema=database.schema,
        backup_keep_daily=1,
        backup_keep_weekly=0,
        backup_keep_monthly=0,
    )
    manager = BackupManager(settings, database)
    first = await manager.create()
    await manager.verify(first.name)
    await manager.verify(first.name)  # a second record replaces the first
    folder = tmp_path / "var" / "backups"
    assert len(list(folder.glob(f"{first.name}.verified-*"))) == 1
    await manager.create()
    report = await manager.prune(dry_run=False)
    assert report.deleted == [first.name]
    assert list(folder.glob(f"{first.name}*")) == []
