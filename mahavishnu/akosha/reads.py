"""Reading the store, always within the caller's source scope (in SQL, so pages and counts
hold only what the caller may see)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from sqlalchemy import ColumnElement, Select, case, func, select, tuple_

from mahavishnu.akosha.keys import open_document
from mahavishnu.akosha.models import LIVE, TOMBSTONED, Record
from mahavishnu.akosha.record_index import key_of
from mahavishnu.akosha.scope import in_scope
from mahavishnu.akosha.views import RecordPage, RecordView, SourcePage, SourceView
from mahavishnu.platform import Database, InvalidArgumentError, NotFoundError, Principal
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.platform.paging import Cursor, check_limit

__all__ = ["Reader"]


class Reader:
    def __init__(
        self, db: Database, ring: KeyRing, *, on_read: Callable[[Iterable[str]], None] | None = None
    ) -> None:
        """`on_read` hears the keys of records a caller read one by one (`get_record`): what
        readers see stays hot (`tiers.AgingPolicy`). A listing is browsing, not reading."""
        self._db = db
        self._ring = ring
        self._on_read = on_read

    async def sources(self, principal: Principal, *, limit: int, cursor: str | None) -> SourcePage:
        """Each source in scope with its counts, by name."""
        check_limit(limit)
        pages = Cursor("list_sources")
        after = pages.decode(cursor)
        scoped = in_scope(principal)
        page_scope = [scoped] if after is None else [scoped, Record.source > after]
        query = (
            select(
                Record.source,
                func.count(case((Record.state == LIVE, 1))),
                func.count(case((Record.state == TOMBSTONED, 1))),
                func.max(Record.received_at),
            )
            .where(*page_scope)
            .group_by(Record.source)
            .order_by(Record.source)
            .limit(limit + 1)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
            total = await session.scalar(select(func.count(func.distinct(Record.source))).where(scoped))
        views = [
            SourceView(source=s, live=live, tombstoned=gone, last_received_at=at)
            for s, live, gone, at in rows
        ]
        return SourcePage(
            sources=views[:limit],
            total=int(total or 0),
            next_cursor=pages.after(views, limit, lambda view: view.source),
        )

    async def record(self, principal: Principal, source: str, memory_id: str) -> RecordView:
        query = select(Record).where(
            in_scope(principal), Record.source == source, Record.memory_id == memory_id
        )
        async with self._db.session() as session:
            row = await session.scalar(query)
        if row is None:
            raise NotFoundError(f"no record {memory_id!r} from source {source!r}")
        if self._on_read is not None and row.state == LIVE:
            self._on_read([key_of(source, memory_id)])
        return self._view(row)

    async def records(
        self,
        principal: Principal,
        *,
        source: str | None,
        tenant: str | None,
        include_tombstoned: bool,
        limit: int,
        cursor: str | None,
    ) -> RecordPage:
        """Records in scope by source, then memory id (a key that never changes, so pages do
        not shift while records arrive)."""
        check_limit(limit)
        pages = Cursor("list_records", source, tenant, include_tombstoned)
        after = _key(pages.decode(cursor))
        matching = _filters(principal, source, tenant, include_tombstoned)
        query: Select[Record] = select(Record).where(*matching)
        if after is not None:
            query = query.where(tuple_(Record.source, Record.memory_id) > after)
        query = query.order_by(Record.source, Record.memory_id).limit(limit + 1)
        async with self._db.session() as session:
            rows = list(await session.scalars(query))
            total = await session.scalar(select(func.count()).select_from(Record).where(*matching))
        return RecordPage(
            records=[self._view(row) for row in rows[:limit]],
            total=int(total or 0),
            next_cursor=pages.after(rows, limit, lambda row: json.dumps([row.source, row.memory_id])),
        )

    def _view(self, row: Record) -> RecordView:
        document = None
        if row.sealed is not None:
            document = open_document(
                self._ring, row.source, row.tenant, row.memory_id, row.version, row.sealed
            )
        return RecordView(
            source=row.source,
            tenant=row.tenant,
            memory_id=row.memory_id,
            version=row.version,
            state=LIVE if row.state == LIVE else TOMBSTONED,
            document=document,
            received_at=row.received_at,
        )


def _filters(
    principal: Principal, source: str | None, tenant: str | None, include_tombstoned: bool
) -> list[ColumnElement[bool]]:
    conditions = [in_scope(principal)]
    if source is not None:
        conditions.append(Record.source == source)
    if tenant is not None:
        conditions.append(Record.tenant == tenant)
    if not include_tombstoned:
        conditions.append(Record.state == LIVE)
    return conditions


def _key(after: str | None) -> tuple[str, str] | None:
    """The (source, memory id) a `list_records` cursor resumes after."""
    if after is None:
        return None
    try:
        source, memory_id = json.loads(after)
    except (ValueError, TypeError):
        raise InvalidArgumentError("cursor is not one this server issued") from None
    if not isinstance(source, str) or not isinstance(memory_id, str):
        raise InvalidArgumentError("cursor is not one this server issued")
    return source, memory_id
