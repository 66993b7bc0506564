"""The audit log: append-only, hash-chained, verifiable.

Every read and write of a tenant's data appends an entry in the same transaction as the act
(so an act without its entry, or an entry without its act, cannot happen). Each entry's digest
is an HMAC (under the vault's index key) of the entry and the digest before it; `verify` walks
the chain and names the first entry that does not match: an edited, deleted or inserted row
breaks it, and without the key it cannot be re-forged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, InvalidArgumentError
from mahavishnu.platform.paging import Cursor, check_limit
from mahavishnu.session_buddy.models import AuditEntry, AuditHead
from mahavishnu.session_buddy.vault import Vault

__all__ = ["AuditPage", "AuditVerification", "AuditView", "append", "page", "verify"]

_HEAD = 1
_BATCH = 1000


class AuditView(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditView]
    next_cursor: str | None = Field(description="Pass back as `cursor` for older entries; null at the start.")


class AuditVerification(BaseModel):
    entries: int = Field(description="Entries checked.")
    intact: bool
    first_broken_seq: int | None = Field(description="The first entry that does not match, if any.")
    reason: str | None


def _entry(
    seq: int, at: datetime, tenant: str, actor: str, action: str, target: str | None, detail: str
) -> bytes:
    moment = at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps([seq, moment, tenant, actor, action, target, detail], ensure_ascii=False).encode()


async def append(
    session: AsyncSession,
    vault: Vault,
    *,
    tenant: str,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an entry in `session`'s transaction (the act's own). Plain statements on its
    connection, not ORM ones: every search and read appends, and the ORM's unit of work and
    bulk-update bookkeeping cost more than the three statements themselves."""
    connection = await session.connection()
    claimed = await connection.execute(
        update(AuditHead)
        .where(AuditHead.id == _HEAD)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.digest)
    )
    seq, previous = claimed.one()
    at = datetime.now(UTC)
    text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
    digest = vault.chain(previous, _entry(seq, at, tenant, actor, action, target, text))
    await connection.execute(
        insert(AuditEntry).values(
            seq=seq,
            at=at,
            tenant=tenant,
            actor=actor,
            action=action,
            target=target,
            detail=text,
            digest=digest,
        )
    )
    await connection.execute(update(AuditHead).where(AuditHead.id == _HEAD).values(digest=digest))


async def page(db: Database, tenant: str, *, limit: int, cursor: str | None) -> AuditPage:
    """A tenant's entries, newest first."""
    check_limit(limit)
    pages = Cursor("audit", tenant)
    after = pages.decode(cursor)
    query = select(AuditEntry).where(AuditEntry.tenant == tenant)
    if after is not None:
        if not after.isdigit():
            raise InvalidArgumentError("cursor is not one this server issued")
        query = query.where(AuditEntry.seq < int(after))
    async with db.session() as session:
        rows = list(await session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit + 1)))
    views = [
        AuditView(
            seq=r.seq, at=r.at, actor=r.actor, action=r.action, target=r.target, detail=json.loads(r.detail)
        )
        for r in rows[:limit]
    ]
    return AuditPage(entries=views, next_cursor=pages.after(rows, limit, lambda r: str(r.seq)))


async def verify(db: Database, vault: Vault) -> AuditVerification:
    """Walk the whole chain, in order, against the keyed digests and the head."""
    previous, expected, checked = bytes(32), 1, 0
    async with db.session() as session:
        while True:
            rows = list(
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.seq >= expected)
                    .order_by(AuditEntry.seq)
                    .limit(_BATCH)
                )
            )
            for row in rows:
                if row.seq != expected:
                    return _broken(checked, expected, f"entry {expected} is missing")
                entry = _entry(row.seq, row.at, row.tenant, row.actor, row.action, row.target, row.detail)
                if vault.chain(previous, entry) != row.digest:
                    return _broken(checked, row.seq, f"entry {row.seq} does not match its digest")
                previous, expected, checked = row.digest, expected + 1, checked + 1
            if len(rows) < _BATCH:
                break
        head = await session.get(AuditHead, _HEAD)
    if head is None or head.seq != checked or head.digest != previous:
        return _broken(checked, checked + 1, "the chain ends before its head: entries were removed")
    return AuditVerification(entries=checked, intact=True, first_broken_seq=None, reason=None)


def _broken(checked: int, seq: int, reason: str) -> AuditVerification:
    return AuditVerification(entries=checked, intact=False, first_broken_seq=seq, reason=reason)
