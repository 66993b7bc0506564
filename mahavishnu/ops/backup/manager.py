"""Backups end to end: create, list, verify, restore, prune, and the disaster-recovery check.

Blocking work (the snapshot, tar, S3) runs in worker threads so a server
can take a backup while it keeps answering. Every create, verify and
restore is recorded in `backup_events`, which metrics and the readiness
checker read, whichever process did the work.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from cryptography.fernet import Fernet
from pydantic import BaseModel
from sqlalchemy import select

from mahavishnu import __version__
from mahavishnu.ops.backup.archive import (
    archive_name,
    archive_pattern,
    read_archive,
    timestamp_of,
    write_archive,
)
from mahavishnu.ops.backup.events import BackupEvent, ensure_events_table, events_table_exists
from mahavishnu.ops.backup.retention import select_keep
from mahavishnu.ops.backup.snapshot import Snapshotter
from mahavishnu.ops.backup.targets import LocalTarget, S3Target, Target
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import get_logger
from mahavishnu.platform.settings import PlatformSettings

__all__ = [
    "BackupInfo",
    "BackupManager",
    "BackupSettings",
    "PruneReport",
    "RecoveryReport",
    "RestoreReport",
    "VerifyReport",
]

log = get_logger("mahavishnu.backup")
BackupSettings = PlatformSettings
"""What backups read: every service's settings carry the `backup_*` knobs, its name and database."""


class BackupInfo(BaseModel):
    name: str
    created_at: datetime
    bytes: int
    encrypted: bool


class VerifyReport(BaseModel):
    name: str
    ok: bool
    problems: list[str]
    schema_revision: str | None
    rows: dict[str, int]


class RestoreReport(BaseModel):
    restored: str
    safety_backup: str
    schema_revision: str | None


class PruneReport(BaseModel):
    dry_run: bool
    kept: list[str]
    deleted: list[str]


class RecoveryReport(BaseModel):
    ok: bool
    backup: str
    backup_seconds: float
    verify_seconds: float
    rows: dict[str, int]
    problems: list[str]


class BackupManager:
    """Backups of one service: its database snapshot, its settings (secrets masked) and the
    service's own `files` (archive name → path, e.g. Mahavishnu's manifest as `repos.yaml`)."""

    def __init__(
        self, settings: BackupSettings, db: Database, *, files: Mapping[str, Path] | None = None
    ) -> None:
        self._settings = settings
        self._db = db
        self._service = settings.service_name
        self._files = dict(files or {})
        self._events_ready = False
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._snapshots = Snapshotter(db.url, db.schema)
        key = settings.backup_encryption_key
        self._fernet = Fernet(key.get_secret_value().encode()) if key is not None else None
        self.target: Target = (
            S3Target(
                settings.backup_s3_bucket,
                settings.backup_s3_prefix,
                endpoint_url=settings.backup_s3_endpoint_url,
                region=settings.backup_s3_region,
            )
            if settings.backup_s3_bucket
            else LocalTarget(settings.effective_backup_dir)
        )

    # --- create --------------------------------------------------------------------
    async def create(self) -> BackupInfo:
        created_at = datetime.now(UTC)
        name = archive_name(self._service, created_at, encrypted=self._fernet is not None)
        revision = (await self._db.schema_state()).current
        with tempfile.TemporaryDirectory(prefix="mahavishnu-backup-") as tmp:
            staging = Path(tmp) / "files"
            staging.mkdir()
            await anyio.to_thread.run_sync(self._snapshots.dump, staging / self._snapshots.filename)
            self._stage_configuration(staging)
            meta = {
                "format": 1,
                "service": self._service,
                "version": __version__,
                "schema_revision": revision,
                "created_at": created_at.isoformat(),
                "database": {"dialect": self._snapshots.dialect, "file": self._snapshots.filename},
            }
            out = Path(tmp) / name
            await anyio.to_thread.run_sync(write_archive, staging, meta, out, self._fernet)
            size = out.stat().st_size
            await anyio.to_thread.run_sync(self.target.put, out, name)
        await self._record("create", name, ok=True, detail=f"{size} bytes to {self.target.description}")
        log.info("backup_created", archive=name, bytes=size, target=self.target.description)
        return BackupInfo(name=name, created_at=created_at, bytes=size, encrypted=self._fernet is not None)

    def _stage_configuration(self, staging: Path) -> None:
        """The effective settings with every secret masked, and the service's own files."""
        (staging / "settings.json").write_text(
            json.dumps(self._settings.redacted(), indent=2, sort_keys=True)
        )
        for arcname, path in self._files.items():
            if path.is_file():
                (staging / arcname).write_bytes(path.read_bytes())

    # --- list ------------------------------------------------------------------------
    async def backups(self) -> list[BackupInfo]:
        names = await anyio.to_thread.run_sync(self.target.names)
        found = []
        for name, size in names:
            created = timestamp_of(self._service, name)
            if created is not None:
                found.append(
                    BackupInfo(name=name, created_at=created, bytes=size, encrypted=name.endswith(".enc"))
                )
        return sorted(found, key=lambda b: b.created_at, reverse=True)

    async def _resolve(self, name: str) -> str:
        """`latest` or a name; refuses anything that is not one of our archive names."""
        if name == "latest":
            backups = await self.backups()
            if not backups:
                raise NotFoundError("there are no backups yet")
            return backups[0].name
        if archive_pattern(self._service).match(name) is None:
            raise InvalidArgumentError(f"{name[:120]!r} is not a backup archive name")
        if (
            timestamp_of(self._service, name) is None
        ):  # our pattern, an impossible date: no such archive can exist
            raise NotFoundError(f"no backup named {name!r}")
        return name

    # --- verify ------------------------------------------------------------------------
    async def verify(self, name: str) -> VerifyReport:
        """Recompute every checksum and restore the database into a scratch copy to prove it opens."""
        name = await self._resolve(name)
        with tempfile.TemporaryDirectory(prefix="mahavishnu-verify-") as tmp:
            try:
                manifest, problems = await self._unpack(name, Path(tmp))
            except InvalidArgumentError as exc:  # undecryptable or damaged: a failed verification
                await self._record("verify", name, ok=False, detail=exc.message)
                return VerifyReport(
                    name=name, ok=False, problems=[exc.message], schema_revision=None, rows={}
                )
            rows: dict[str, int] = {}
            if not problems:
                try:
                    rows = await anyio.to_thread.run_sync(
                        self._snapshots.check, Path(tmp) / "files" / manifest["database"]["file"], Path(tmp)
                    )
                except Exception as exc:
                    problems.append(f"database snapshot does not restore: {exc}")
        ok = not problems
        await self._record("verify", name, ok=ok, detail="; ".join(problems) or f"{sum(rows.values())} rows")
        log.info("backup_verified", archive=name, ok=ok, problems=problems)
        return VerifyReport(
            name=name, ok=ok, problems=problems, schema_revision=manifest.get("schema_revision"), rows=rows
        )

    async def _unpack(self, name: str, tmp: Path) -> tuple[dict[str, Any], list[str]]:
        local = tmp / name
        await anyio.to_thread.run_sync(self.target.get, name, local)
        files = tmp / "files"
        files.mkdir()
        return await anyio.to_thread.run_sync(read_archive, local, files, self._fernet)

    # --- restore -------------------------------------------------------------------------
    async def restore(self, name: str) -> RestoreReport:
        """Take a safety backup, then put the data back exactly as it was at backup time."""
        name = await self._resolve(name)
        known = await self._known_revisions()
        with tempfile.TemporaryDirectory(prefix="mahavishnu-restore-") as tmp:
            manifest, problems = await self._unpack(name, Path(tmp))
            if problems:
                await self._record("restore", name, ok=False, detail="; ".join(problems))
                raise InvalidArgumentError(f"refusing to restore {name}: {'; '.join(problems)}")
            revision = manifest.get("schema_revision")
            if revision is not None and revision not in known:
                await self._record(
                    "restore", name, ok=False, detail=f"schema {revision} is newer than this code"
                )
                raise InvalidArgumentError(
                    f"refusing to restore {name}: its schema ({revision}) is newer than this version knows"
                )
            if manifest["database"]["dialect"] != self._snapshots.dialect:
                raise InvalidArgumentError(
                    f"refusing to restore {name}: it holds a {manifest['database']['dialect']} database"
                )
            safety = await self.create()
            await anyio.to_thread.run_sync(
                self._snapshots.restore, Path(tmp) / "files" / manifest["database"]["file"]
            )
        await self._db.dispose()  # pooled connections may describe the old file or schema
        await self._db.ensure_schema(upgrade=True)
        # The restored data predates the safety backup; record it again so its age stays known.
        await self._record("create", safety.name, ok=True, detail="safety backup taken before a restore")
        await self._record("restore", name, ok=True, detail=f"safety backup {safety.name}")
        log.warning("backup_restored", archive=name, safety_backup=safety.name)
        return RestoreReport(restored=name, safety_backup=safety.name, schema_revision=revision)

    async def _known_revisions(self) -> set[str]:
        return self._db.known_revisions()

    # --- prune ---------------------------------------------------------------------------
    async def prune(self, *, dry_run: bool) -> PruneReport:
        backups = await self.backups()
        keep = select_keep(
            [b.created_at for b in backups],
            daily=self._settings.backup_keep_daily,
            weekly=self._settings.backup_keep_weekly,
            monthly=self._settings.backup_keep_monthly,
        )
        kept = [b.name for b in backups if b.created_at in keep]
        doomed = [b.name for b in backups if b.created_at not in keep]
        if not dry_run:
            for name in doomed:
                await anyio.to_thread.run_sync(self.target.delete, name)
            log.info("backups_pruned", deleted=len(doomed), kept=len(kept))
        return PruneReport(dry_run=dry_run, kept=kept, deleted=doomed)

    # --- disaster recovery -----------------------------------------------------------------
    async def disaster_recovery_check(self) -> RecoveryReport:
        """Back up now and prove the archive restores (into a scratch database): RPO and RTO evidence."""
        started = time.monotonic()
        backup = await self.create()
        made = time.monotonic()
        report = await self.verify(backup.name)
        return RecoveryReport(
            ok=report.ok,
            backup=backup.name,
            backup_seconds=round(made - started, 3),
            verify_seconds=round(time.monotonic() - made, 3),
            rows=report.rows,
            problems=report.problems,
        )

    # --- events --------------------------------------------------------------------------------
    def on_event(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call `listener` after each recorded event (the server refreshes its gauges at once)."""
        self._listeners.append(listener)

    async def _record(self, kind: str, archive: str, *, ok: bool, detail: str) -> None:
        await self._insert_event(kind, archive, ok=ok, detail=detail)
        for listener in self._listeners:
            await listener()

    async def _insert_event(self, kind: str, archive: str, *, ok: bool, detail: str) -> None:
        async with self._db.session() as session:
            if not self._events_ready:
                await ensure_events_table(session)
                self._events_ready = True
            session.add(
                BackupEvent(
                    id=new_id(),
                    kind=kind,
                    archive=archive,
                    ok=ok,
                    detail=detail,
                    created_at=datetime.now(UTC),
                )
            )

    async def last_success(self, kind: str) -> BackupEvent | None:
        async with self._db.session() as session:
            if not await events_table_exists(session):
                return None
            return await session.scalar(
                select(BackupEvent)
                .where(BackupEvent.kind == kind, BackupEvent.ok.is_(True))
                .order_by(BackupEvent.created_at.desc())
                .limit(1)
            )

    async def last_event(self, kind: str) -> BackupEvent | None:
        async with self._db.session() as session:
            if not await events_table_exists(session):
                return None
            return await session.scalar(
                select(BackupEvent)
                .where(BackupEvent.kind == kind)
                .order_by(BackupEvent.created_at.desc())
                .limit(1)
            )
