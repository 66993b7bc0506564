"""Backups that restore: SQLite and PostgreSQL, local and S3 (moto server), plain and encrypted."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from mahavishnu.ops.backup.archive import archive_name
from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.models import Workflow
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from tests.support.server import free_port
from tests.workflows.conftest import harness

SECRETS = {
    "auth_secret": "auth-secret-value-that-is-long-enough-0123456789",
    "redis_url": "redis://user:redis-password-value@cache:6379/0",
}
TABLES = ("workflows", "repo_runs", "run_attempts", "dead_letters", "circuit_breakers")


def settings_for(database: Database, root: Path, **extra: Any) -> MahavishnuSettings:
    return MahavishnuSettings(
        repos_file=root / "repos.yaml",
        allowed_roots=[root],
        data_dir=root / "var",
        database_url=database.url,
        database_schema=database.schema,
        **SECRETS,
        **extra,
    )


async def dump_rows(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    rows = {}
    async with database.session() as session:
        for table in TABLES:
            result = await session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))  # noqa: S608
            rows[table] = [tuple(r) for r in result.all()]
    return rows


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


async def test_restore_brings_back_exactly_the_backed_up_rows(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        await h.wait((await h.service.trigger(ADMIN, "git-status", tag="python")).workflow_id)
        await h.wait(
            (
                await h.service.trigger(ADMIN, "agent", repos=["alpha"], params={"prompt": "exit:3"})
            ).workflow_id
        )
        manager = BackupManager(settings_for(database, tmp_path), database)
        before = await dump_rows(database)
        backup = await manager.create()

        # Change and delete data after the backup.
        later = await h.service.trigger(ADMIN, "git-status", repos=["gamma"])
        await h.wait(later.workflow_id)
        async with database.session() as session:
            await session.execute(text("DELETE FROM run_attempts"))
            doomed = await session.get(Workflow, before["workflows"][0][0])
            assert doomed is not None
            await session.delete(doomed)
        assert await dump_rows(database) != before

    report = await manager.restore(backup.name)
    assert report.restored == backup.name
    assert report.safety_backup != backup.name
    assert await dump_rows(database) == before
    names = [b.name for b in await manager.backups()]
    assert backup.name in names
    assert report.safety_backup in names


async def test_verify_recomputes_checksums_and_restores_into_scratch(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path) as h:
        await h.wait((await h.service.trigger(ADMIN, "git-status", tag="python")).workflow_id)
    manager = BackupManager(settings_for(database, tmp_path), database)
    backup = await manager.create()
    report = await manager.verify("latest")
    assert report.ok
    assert report.name == backup.name
    assert report.schema_revision == (await database.schema_state()).head
    assert report.rows["workflows"] == 1
    assert report.rows["repo_runs"] == 2
    last = await manager.last_event("verify")
    assert last is not None
    assert last.ok


async def test_tampered_archive_fails_verify_and_is_never_restored(
    database: Database, tmp_path: Path
) -> None:
    manager = BackupManager(settings_for(database, tmp_path), database)
    backup = await manager.create()
    path = tmp_path / "var" / "backups" / backup.name
    files = members(path.read_bytes())
    snapshot = next(n for n in files if n.startswith("database."))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            if name == snapshot:
                data = data[:-10] + b"0123456789"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())

    report = await manager.verify(backup.name)
    assert not report.ok
    assert report.problems == [f"{snapshot}: checksum mismatch"]
    last = await manager.last_event("verify")
    assert last is not None
    assert not last.ok
    before = len(await manager.backups())
    with pytest.raises(InvalidArgumentError, match="checksum mismatch"):
        await manager.restore(backup.name)
    assert len(await manager.backups()) == before  # refused before even taking a safety backup


async def test_archive_from_a_newer_schema_is_refused(database: Database, tmp_path: Path) -> None:
    manager = BackupManager(settings_for(database, tmp_path), database)
    backup = await manager.create()
    path = tmp_path / "var" / "backups" / backup.name
    files = members(path.read_bytes())
    manifest = json.loads(files["manifest.json"])
    manifest["schema_revision"] = "9999"
    files["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InvalidArgumentError, match="newer"):
        await manager.restore(backup.name)


async def test_no_secret_is_ever_in_an_archive(database: Database, tmp_path: Path) -> None:
    key = Fernet.generate_key()
    (tmp_path / "repos.yaml").write_text("repos: []\n")
    settings = settings_for(database, tmp_path, backup_encryption_key=key.decode())
    manager = BackupManager(settings, database, files={"repos.yaml": settings.repos_file})
    backup = await manager.create()
    assert backup.name.endswith(".tar.gz.enc")
    raw = (tmp_path / "var" / "backups" / backup.name).read_bytes()
    assert not raw.startswith(b"\x1f\x8b")  # not a readable gzip: encrypted
    contents = members(Fernet(key).decrypt(raw))
    assert {"manifest.json", "settings.json", "repos.yaml"} <= set(contents)
    secrets = [*SECRETS.values(), "redis-password-value", key.decode()]
    for name, data in contents.items():
        for secret in secrets:
            assert secret.encode() not in data, f"{name} holds a secret"
    shown = json.loads(contents["settings.json"])
    assert shown["auth_secret"] == "**********"
    assert shown["backup_encryption_key"] == "**********"
    assert (await manager.verify(backup.name)).ok


async def test_encrypted_archive_needs_the_key(database: Database, tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    encrypted = BackupManager(settings_for(database, tmp_path, backup_encryption_key=key), database)
    backup = await encrypted.create()
    keyless = BackupManager(settings_for(database, tmp_path), database)
    report = await keyless.verify(backup.name)
    assert not report.ok
    assert "encrypted" in report.problems[0]
    last = await keyless.last_event("verify")
    assert last is not None
    assert not last.ok  # the failed verification is recorded, so the alert can fire
    other = BackupManager(
        settings_for(database, tmp_path, backup_encryption_key=Fernet.generate_key().decode()), database
    )
    assert "cannot be decrypted" in (await other.verify(backup.name)).problems[0]
    with pytest.raises(InvalidArgumentError, match="cannot be decrypted"):
        await other.restore(backup.name)


async def test_prune_applies_the_retention_by_archive_timestamp(database: Database, tmp_path: Path) -> None:
    manager = BackupManager(
        settings_for(database, tmp_path, backup_keep_daily=3, backup_keep_weekly=1, backup_keep_monthly=1),
        database,
    )
    real = await manager.create()
    folder = tmp_path / "var" / "backups"
    now = datetime.now(UTC)
    for days in range(1, 10):
        name = archive_name("mahavishnu", now - timedelta(days=days), encrypted=False)
        shutil.copyfile(folder / real.name, folder / name)
    assert len(await manager.backups()) == 10
    preview = await manager.prune(dry_run=True)
    assert len(await manager.backups()) == 10
    assert len(preview.kept) == 3  # 3 newest days; the week's and the month's newest are among them
    assert real.name in preview.kept
    done = await manager.prune(dry_run=False)
    assert done.deleted == preview.deleted
    assert sorted(b.name for b in await manager.backups()) == sorted(preview.kept)


async def test_names_outside_the_archive_pattern_are_refused(database: Database, tmp_path: Path) -> None:
    manager = BackupManager(settings_for(database, tmp_path), database)
    for bad in ("../../etc/passwd", "mahavishnu.db", ""):
        with pytest.raises(InvalidArgumentError):
            await manager.verify(bad)


async def test_a_name_with_an_impossible_date_is_no_backup(database: Database, tmp_path: Path) -> None:
    """The archive pattern with month 13 or 30 February: a clean 'no backup', not a crash."""
    manager = BackupManager(settings_for(database, tmp_path), database)
    month_13, february_30 = "20261399T000000000000Z", "20260230T250000000000Z"
    for impossible in (f"mahavishnu-{month_13}.tar.gz", f"mahavishnu-{february_30}.tar.gz"):
        for call in (manager.restore, manager.verify):
            with pytest.raises(NotFoundError, match="no backup named"):
                await call(impossible)
    assert await manager.backups() == []


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API server on loopback (moto's standalone server)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


async def test_s3_target_round_trip(
    database: Database, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"backups-{time.time_ns()}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    async with harness(database, tmp_path) as h:
        await h.wait((await h.service.trigger(ADMIN, "git-status", tag="python")).workflow_id)
    settings = settings_for(
        database,
        tmp_path,
        backup_s3_bucket=bucket,
        backup_s3_endpoint_url=s3_endpoint,
        backup_s3_region="us-east-1",
    )
    manager = BackupManager(settings, database)
    before = await dump_rows(database)
    backup = await manager.create()
    objects = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").list_objects_v2(
        Bucket=bucket
    )
    assert [o["Key"] for o in objects["Contents"]] == [f"mahavishnu/{backup.name}"]
    assert not (tmp_path / "var" / "backups").exists()
    assert [b.name for b in await manager.backups()] == [backup.name]
    assert (await manager.verify(backup.name)).ok
    async with database.session() as session:
        await session.execute(text("DELETE FROM run_attempts"))
    await manager.restore(backup.name)
    assert await dump_rows(database) == before
    assert len(await manager.backups()) == 2  # the archive and the safety backup


async def test_disaster_recovery_check(database: Database, tmp_path: Path) -> None:
    manager = BackupManager(settings_for(database, tmp_path), database)
    report = await manager.disaster_recovery_check()
    assert report.ok
    assert report.backup_seconds > 0
    assert report.verify_seconds > 0
    assert "workflows" in report.rows
