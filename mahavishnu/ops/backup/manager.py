"""Backups end to end: create, list, verify, restore, prune, and the disaster-recovery check.

Blocking work (the snapshot, tar, S3) runs in worker threads so a server
can take a backup while it keeps answering. Every create, verify and
restore is recorded in `backup_events` (ops' table, see `mahavishnu.ops.schema`),
which metrics and the readiness checker read, whichever process did the work.
Verifications are also recorded beside the archives (`ledger`), where a restore
cannot take them back.
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
from mahavishnu.ops.backup.events import BackupEvent, events_table_exists
from mahavishnu.ops.backup.ids import backup_id, match_backup
from mahavishnu.ops.backup.ledger import Verification, VerificationLog, parse_records
from mahavishnu.ops.backup.retention import select_keep
from mahavishnu.ops.backup.snapshot import Snapshotter
from mahavishnu.ops.backup.targets import LocalTarget, S3Target, Target
from mahavishnu.ops.schema import upgrade_ops_schema
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
    id: str
    """SHA-256 of the name: `backup list` shows its shortest unique prefix, commands take any."""
    name: str
    created_at: datetime
    bytes: int
    encrypted: bool
    verified: bool | None = None
    """The newest verification's result (None: never verified)."""
    verified_at: datetime | None = None


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
        self._ledger = VerificationLog(self.target)

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
        return BackupInfo(
            id=backup_id(name),
            name=name,
            created_at=created_at,
            bytes=size,
            encrypted=self._fernet is not None,
        )

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
        listing = await anyio.to_thread.run_sync(self.target.names)
        archives = {name: size for name, size in listing if timestamp_of(self._service, name) is not None}
        verified = parse_records((name for name, _ in listing), set(archives))
        found = [
            BackupInfo(
                id=backup_id(name),
                name=name,
                created_at=created,
                bytes=size,
                encrypted=name.endswith(".enc"),
                verified=verified[name].ok if name in verified else None,
                verified_at=verified[name].verified_at if name in verified else None,
            )
            for name, size in archives.items()
            if (created := timestamp_of(self._service, name)) is not None
        ]
        return sorted(found, key=lambda b: b.created_at, reverse=True)

    async def _resolve(self, name: str) -> str:
        """`latest`, an archive name, or a unique prefix of an ID or a name (see `ids`)."""
        if archive_pattern(self._service).match(name) is not None:
            if timestamp_of(self._service, name) is None:  # our pattern, an impossible date
                raise NotFoundError(f"no backup named {name!r}")
            return name
        backups = await self.backups()
        if name == "latest":
            if not backups:
                raise NotFoundError("there are no backups yet")
            return backups[0].name
        return match_backup(name, [b.name for b in backups], service=self._service)

    async def show(self, name: str) -> BackupInfo:
        """One archive, named as every command takes it."""
        name = await self._resolve(name)
        found = next((b for b in await self.backups() if b.name == name), None)
        if found is None:
            raise NotFoundError(f"no backup named {name!r} in {self.target.description}")
        return found

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
        self._events_ready = False  # the restored copy may predate ops' tables
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
            listing = [name for name, _ in await anyio.to_thread.run_sync(self.target.names)]
            for name in doomed:
                await anyio.to_thread.run_sync(self.target.delete, name)
                await anyio.to_thread.run_sync(self._ledger.forget, name, listing)
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
        at = datetime.now(UTC)
        if kind == "verify":  # first where a restore cannot take it back, then in the database
            await anyio.to_thread.run_sync(lambda: self._ledger.write(archive, ok=ok, detail=detail, at=at))
        await self._insert_event(kind, archive, ok=ok, detail=detail, at=at)
        for listener in self._listeners:
            await listener()

    async def prepare(self) -> None:
        """Bring ops' tables in this database to head (once per manager, and after a restore)."""
        if not self._events_ready:
            await upgrade_ops_schema(self._db)
            self._events_ready = True

    async def _insert_event(self, kind: str, archive: str, *, ok: bool, detail: str, at: datetime) -> None:
        await self.prepare()
        async with self._db.session() as session:
            session.add(
                BackupEvent(id=new_id(), kind=kind, archive=archive, ok=ok, detail=detail, created_at=at)
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
        """The newest event of `kind`; for "verify", the newer of the database's and the ledger's
        (after a restore the database may not know the latest verification)."""
        event = await self._last_logged(kind)
        if kind != "verify":
            return event
        latest = await self._latest_verification()
        if latest is None or (event is not None and event.created_at >= latest.verified_at):
            return event
        detail = None if latest.ok else await anyio.to_thread.run_sync(self._ledger.detail, latest)
        return BackupEvent(
            id=new_id(),
            kind=kind,
            archive=latest.archive,
            ok=latest.ok,
            detail=detail,
            created_at=latest.verified_at,
        )

    async def _latest_verification(self) -> Verification | None:
        listing = [name for name, _ in await anyio.to_thread.run_sync(self.target.names)]
        archives = {name for name in listing if timestamp_of(self._service, name) is not None}
        records = parse_records(listing, archives).values()
        return max(records, key=lambda v: v.verified_at, default=None)

    async def _last_logged(self, kind: str) -> BackupEvent | None:
        async with self._db.session() as session:
            if not await events_table_exists(session):
                return None
            return await session.scalar(
                select(BackupEvent)
                .where(BackupEvent.kind == kind)
                .order_by(BackupEvent.created_at.desc())
                .limit(1)
            )
