"""Backup freshness as metrics, read from `backup_events` so a backup taken by a cron job in
another process still counts."""

from __future__ import annotations

from prometheus_client import Gauge

from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.platform.observability import Metrics

__all__ = ["BackupMetrics"]


class BackupMetrics:
    def __init__(self, metrics: Metrics, *, prefix: str = "mahavishnu") -> None:
        """`prefix` is the service's metric prefix: `<prefix>_backup_…`, like its other metrics."""
        self.last_success = Gauge(
            f"{prefix}_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup (0: none yet).",
            registry=metrics.registry,
        )
        self.last_verify_ok = Gauge(
            f"{prefix}_backup_last_verify_success",
            "1 when the most recent backup verification passed, else 0.",
            registry=metrics.registry,
        )

    async def refresh(self, manager: BackupManager) -> None:
        created = await manager.last_success("create")
        verified = await manager.last_event("verify")
        self.last_success.set(created.created_at.timestamp() if created else 0)
        self.last_verify_ok.set(1 if verified is not None and verified.ok else 0)
