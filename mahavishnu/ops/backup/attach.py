"""Backups as part of a served service: the admin tools, and gauges kept fresh in the background.

A service never imports ops; the composition root (`mahavishnu.wiring`) calls `attach_backups`
on the `Service` a factory returned, so every service can get the same backup tools and metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio

from mahavishnu.ops.backup.manager import BackupManager, BackupSettings
from mahavishnu.ops.backup.metrics import BackupMetrics
from mahavishnu.ops.backup.tools import BackupTools
from mahavishnu.platform.app import Service, extend_service
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["BACKUP_METRICS_SECONDS", "attach_backups"]

log = get_logger("mahavishnu.backup")
BACKUP_METRICS_SECONDS = 15.0
"""How often the gauges are re-read from `backup_events` (a cron job's backup counts too)."""


def attach_backups(
    service: Service,
    settings: BackupSettings,
    db: Database,
    metrics: Metrics,
    *,
    files: Mapping[str, Path] | None = None,
) -> Service:
    """`service` plus the admin backup tools and the backup gauges, over the service's own `db`
    (shared, so a restore's reconnect is the service's reconnect too); `files` as for
    `BackupManager`."""
    backups = BackupManager(settings, db, files=files)
    gauges = BackupMetrics(metrics, prefix=settings.metric_prefix)
    backups.on_event(lambda: gauges.refresh(backups))

    @contextlib.asynccontextmanager
    async def refreshing() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_refresh, gauges, backups)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    return extend_service(service, tools=BackupTools(backups).specs(), background=refreshing)


async def _refresh(gauges: BackupMetrics, backups: BackupManager) -> None:
    while True:
        try:
            await backups.prepare()  # ops' tables in the service's database, from the start
            await gauges.refresh(backups)
        except Exception as exc:  # the database may be down; the gauges keep their last values
            log.debug("backup_metrics_stale", error=type(exc).__name__)
        await anyio.sleep(BACKUP_METRICS_SECONDS)
