"""Admin-only MCP tools over the BackupManager."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from mahavishnu.ops.backup.manager import BackupInfo, BackupManager, RecoveryReport, RestoreReport
from mahavishnu.platform.mcp import ToolSpec

__all__ = ["BackupTools"]


class BackupList(BaseModel):
    target: str
    backups: list[BackupInfo]


class BackupTools:
    def __init__(self, manager: BackupManager) -> None:
        self._manager = manager

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.create_backup, min_role="admin", read_only=False, title="Create a backup"),
            ToolSpec(self.list_backups, min_role="admin", title="List backups"),
            ToolSpec(self.restore_backup, min_role="admin", read_only=False, title="Restore a backup"),
            ToolSpec(self.run_disaster_recovery_check, min_role="admin", read_only=False, title="DR check"),
        ]

    async def create_backup(self) -> BackupInfo:
        """Back up now: a consistent database snapshot, the settings (secrets masked) and the
        repository manifest, in one checksummed archive."""
        return await self._manager.create()

    async def list_backups(self) -> BackupList:
        """List backup archives, newest first."""
        return BackupList(target=self._manager.target.description, backups=await self._manager.backups())

    async def restore_backup(self, name: str) -> RestoreReport:
        """Restore the archive `name`: its full name, "latest", or a unique prefix of its `id` (as
        list_backups gives). A safety backup is taken first; an archive whose checksums fail or
        whose schema is newer than this server is refused."""
        return await self._manager.restore(name)

    async def run_disaster_recovery_check(self) -> RecoveryReport:
        """Take a backup and prove it restores into a scratch database; reports how long each took."""
        return await self._manager.disaster_recovery_check()
