"""What every per-tenant store of Session-Buddy is made of: the database, the vault, the one
tenant it is narrowed to, who acts, and the audit entry each act appends."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database
from mahavishnu.session_buddy import audit
from mahavishnu.session_buddy.memory_records import Limits
from mahavishnu.session_buddy.vault import Vault

if TYPE_CHECKING:
    from mahavishnu.session_buddy.keywords import Keywords
    from mahavishnu.session_buddy.meaning import Meaning

__all__ = ["MemoryStore", "TenantStore"]


class TenantStore:
    def __init__(self, db: Database, vault: Vault, *, tenant: str, author: str) -> None:
        self._db = db
        self._vault = vault
        self.tenant = tenant
        self._author = author

    async def _audit(self, session: AsyncSession, action: str, target: str | None, **detail: Any) -> None:
        """Append who did `action` to `target` to the audit log, in `session`'s transaction."""
        await audit.append(
            session,
            self._vault,
            tenant=self.tenant,
            actor=self._author,
            action=action,
            target=target,
            detail=detail,
        )


class MemoryStore(TenantStore):
    """A tenant's memories, as every store of them sees them: the limits a memory is checked
    against, and search by meaning where it runs (its embedder and index)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        limits: Limits,
        *,
        tenant: str,
        author: str,
        meaning: Meaning | None = None,
        keywords: Keywords | None = None,
    ) -> None:
        super().__init__(db, vault, tenant=tenant, author=author)
        self._limits = limits
        self._meaning = meaning
        """None: no model runs here; keyword search only, nothing is embedded or kept of vectors."""
        self._keywords = keywords
        """None: keyword search ranks in SQL (the CLI, which runs one command and exits)."""

    async def _reindex(self, memory_ids: Collection[str]) -> None:
        """Bring the in-process keyword index up to date with what this store just committed."""
        if self._keywords is not None and memory_ids:
            async with self._db.session() as session:
                await self._keywords.refresh(session, memory_ids, self.tenant)
