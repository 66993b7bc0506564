"""Backups and disaster recovery."""

from mahavishnu.ops.backup.manager import (
    BackupInfo,
    BackupManager,
    PruneReport,
    RecoveryReport,
    RestoreReport,
    VerifyReport,
)

__all__ = ["BackupInfo", "BackupManager", "PruneReport", "RecoveryReport", "RestoreReport", "VerifyReport"]
