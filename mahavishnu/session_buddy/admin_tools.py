"""Session-Buddy's admin tools: what an operator of the whole store does, across tenants."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from pydantic import BaseModel, Field

from mahavishnu.platform import Database
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.platform.paging import MAX_PAGE
from mahavishnu.session_buddy import audit
from mahavishnu.session_buddy.audit import AuditPage, AuditVerification
from mahavishnu.session_buddy.retention import MAX_AGE_DAYS, RetentionReport, purge, set_policy
from mahavishnu.session_buddy.rotator import RotationStatus, Rotator
from mahavishnu.session_buddy.vault import Vault

__all__ = ["AdminTools"]


class RetentionPolicyView(BaseModel):
    tenant: str
    max_age_days: int | None = Field(description="Memories not updated for this long are purged; null: kept.")


class AdminTools:
    def __init__(
        self, db: Database, vault: Callable[[], Vault], rotator: Rotator, *, purge_after_days: int
    ) -> None:
        self._db = db
        self._vault = vault
        self._rotator = rotator
        self._purge_after_days = purge_after_days

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.rotate_encryption_key, min_role="admin", read_only=False, title="Rotate the key"),
            ToolSpec(
                self.run_retention, min_role="admin", read_only=False, title="Purge what retention says"
            ),
            ToolSpec(self.set_retention_policy, min_role="admin", read_only=False, title="Set retention"),
            ToolSpec(self.get_audit_log, min_role="admin", title="Read the audit log"),
            ToolSpec(self.verify_audit_log, min_role="admin", title="Verify the audit log"),
        ]

    async def get_audit_log(
        self,
        limit: Annotated[
            int, Field(ge=1, le=MAX_PAGE, description=f"Entries per page, 1 to {MAX_PAGE}.")
        ] = 50,
        cursor: str | None = None,
    ) -> AuditPage:
        """Who read, wrote, searched, deleted or rotated what in the caller's tenant, newest
        first (ids and counts, never content)."""
        return await audit.page(self._db, current_principal().tenant, limit=limit, cursor=cursor)

    async def verify_audit_log(self) -> AuditVerification:
        """Check the whole audit chain: every entry against its keyed digest and the one before
        it. `intact` false names the first entry that was edited, removed or inserted."""
        return await audit.verify(self._db, self._vault())

    async def run_retention(self) -> RetentionReport:
        """Purge for good, in every tenant: expired memories, deleted ones past the purge
        window, and memories older than their tenant's policy. It also runs by itself hourly."""
        return await purge(self._db, purge_after_days=self._purge_after_days)

    async def set_retention_policy(
        self, max_age_days: Annotated[int, Field(ge=1, le=MAX_AGE_DAYS)] | None
    ) -> RetentionPolicyView:
        """Set the caller's tenant's retention: memories not updated for `max_age_days` are
        purged for good by the next retention run; null removes the policy."""
        tenant = current_principal().tenant
        return RetentionPolicyView(
            tenant=tenant, max_age_days=await set_policy(self._db, tenant, max_age_days)
        )

    async def rotate_encryption_key(self) -> RotationStatus:
        """Re-seal everything stored under an older key with the current one (the first key of
        SESSION_ENCRYPTION_KEY), in the background while the service keeps serving. Call again
        to see the progress; when `remaining` is 0 the older keys can be removed from the
        setting. A start-up with values under an older key starts the sweep by itself."""
        return await self._rotator.start_if_needed()
