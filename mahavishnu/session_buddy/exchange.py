"""Moving one tenant's memories out and back in: a JSONL export that an import reproduces
exactly, and an import that refuses any file an export did not write as it stands. This module
is the store: which rows an export reads and how an import writes them, both changing with the
schema. What a line is and how a file is verified live in `exchange_format`, a contract with
every file already written.

**Export** pages through the tenant's live memories by id: deleted and expired ones are not
exported.

**Import** verifies the whole file before writing anything, then writes in transactions of
`_BATCH` records through `write_version`, so history, blind index rows and seals are exactly
those of a store. A memory keeps its exported id when no row holds it; one already here at the
same version is skipped (importing a file twice is a no-op); an id another tenant (or a deleted
memory) holds gets a new id; content this tenant already holds is skipped. An embedding made by
the running model is stored as exported (searchable by meaning at once), any other is left to
the background embedder. A file another deployment signed is refused unless the caller passes
`trust_foreign_signature`; only the in-process API offers it (the CLI, run by whoever holds the
database and its keys), never the MCP tool, because the signature is what makes the authors and
times an import keeps worth believing, and a token holder must not be able to forge them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.paging import MAX_PAGE, Cursor, check_limit
from mahavishnu.session_buddy.exchange_format import (
    CHAIN_START,
    FORMAT,
    ExportedMemory,
    ExportedVersion,
    ExportReader,
    ImportRefused,
    VerifiedRecord,
    chained,
    exported_embedding,
    file_lines,
    record_checksum,
    signed_trailer,
)
from mahavishnu.session_buddy.memory_records import Filters, drop_index, live, write_version
from mahavishnu.session_buddy.models import Memory, MemoryVector, MemoryVersion
from mahavishnu.session_buddy.tenant_store import MemoryStore
from mahavishnu.session_buddy.vault import MEMORY_RECORD
from mahavishnu.session_buddy.vectors import open_vector, seal_vector

if TYPE_CHECKING:
    pass

__all__ = [
    "MAX_FILE_RECORDS",
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_RECORDS",
    "Exchange",
    "ExportPage",
    "ImportRefused",
    "ImportReport",
    "ImportedMemory",
    "export_all",
]

MAX_IMPORT_RECORDS = 10_000
"""Records one `import_lines` call takes (it holds them all in memory while it verifies)."""
MAX_IMPORT_BYTES = 32 * 1024 * 1024
"""Bytes one `import_lines` call takes; the MCP tool is held lower still by the HTTP body limit."""
MAX_FILE_RECORDS = 1_000_000
"""Records `import_file` takes: it streams, keeping 32 bytes per record between its two passes."""
_BATCH = 100
"""Records per write transaction: short enough not to hold the write lock (and the audit head)
for long, long enough to amortise the commit."""
_ATTEMPTS = 3
_PAGE_CHARS = 256 * 1024
"""An export page stops adding memories past this many characters (one memory always fits)."""

Outcome = Literal["created", "renamed", "present", "other_version", "same_content", "expired"]


# --- answers ----------------------------------------------------------------------------------


class ExportPage(BaseModel):
    lines: list[str] = Field(
        description="JSONL lines, in order: one memory each, and on the last page the trailer."
    )
    records: int = Field(description="Memories in this page.")
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page (the trailer's)."
    )


class ImportedMemory(BaseModel):
    line: int
    exported_id: str
    id: str = Field(description="The memory in this tenant: the new one, or the one already holding it.")
    outcome: Outcome


class ImportReport(BaseModel):
    records: int = Field(description="Memories in the file.")
    created: int = Field(description="Memories written, under their exported id or a new one.")
    skipped: int = Field(
        description="Memories already here (same id and version, or same content), or expired."
    )
    vectors: int = Field(description="Embeddings stored as exported; the others are made in the background.")
    foreign_signature: bool = Field(
        description="The file was signed by another deployment and trusted as asked."
    )
    items: list[ImportedMemory] = Field(
        description=f"Memories not written under their exported id (renamed, skipped): the first {MAX_PAGE}."
    )
    items_left_off: int = Field(description="Further such memories not listed.")


# --- the store ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Placed:
    record: VerifiedRecord
    memory_id: str
    outcome: Outcome
    stored_vector: NDArray[np.float32] | None = None


@dataclass(slots=True)
class _Tally:
    records: int = 0
    created: int = 0
    vectors: int = 0
    items: list[ImportedMemory] = field(default_factory=list)
    left_off: int = 0

    def add(self, placed: _Placed) -> None:
        self.records += 1
        self.created += placed.outcome in ("created", "renamed")
        self.vectors += placed.stored_vector is not None
        if placed.outcome == "created":
            return
        if len(self.items) >= MAX_PAGE:
            self.left_off += 1
            return
        self.items.append(
            ImportedMemory(
                line=placed.record.line,
                exported_id=placed.record.memory.id,
                id=placed.memory_id,
                outcome=placed.outcome,
            )
        )


class Exchange(MemoryStore):
    # --- export -------------------------------------------------------------------------------

    async def export(self, cursor: str | None = None, limit: int = 50) -> ExportPage:
        """A page of the tenant's export, by id. Live memories only: a deleted memory is gone
        from every read (its rows stay only for the purge window) and an expired one is
        forgotten, so an import must not bring either back. A memory stored while the pages
        are read is in the export if its id sorts after the page being read (ids are
        time-ordered, so a new one is); one updated meanwhile is exported as it is then."""
        check_limit(limit)
        after, count, chain = self._resume(cursor)
        query = live(select(Memory), self._vault, self._limits, self.tenant, Filters())
        async with self._db.session() as session:
            rows = list(
                await session.scalars(query.where(Memory.id > after).order_by(Memory.id).limit(limit + 1))
            )
            page = rows[:limit]
            versions = await self._versions(session, [m.id for m in page])
            vectors = await self._vectors(session, [m.id for m in page])
            lines: list[str] = []
            size = 0
            for memory in page:
                record = self._exported(memory, versions.get(memory.id, []), vectors.get(memory.id))
                lines.append(record.model_dump_json())
                count += 1
                chain = chained(chain, bytes.fromhex(record.checksum))
                size += len(lines[-1])
                if size >= _PAGE_CHARS:
                    break
            records = len(lines)
            last = records == len(rows)
            if last:
                lines.append(signed_trailer(self._vault, count, chain).model_dump_json())
            await self._audit(session, "memory.export", None, returned=records, last=last)
        next_cursor = (
            None if last else self._pages().encode(self._position(page[records - 1].id, count, chain))
        )
        return ExportPage(lines=lines, records=records, next_cursor=next_cursor)

    async def _versions(self, session: AsyncSession, ids: list[str]) -> dict[str, list[MemoryVersion]]:
        found: dict[str, list[MemoryVersion]] = {}
        rows = await session.scalars(
            select(MemoryVersion)
            .where(MemoryVersion.tenant == self.tenant, MemoryVersion.memory_id.in_(ids))
            .order_by(MemoryVersion.memory_id, MemoryVersion.version)
        )
        for row in rows:
            found.setdefault(row.memory_id, []).append(row)
        return found

    async def _vectors(self, session: AsyncSession, ids: list[str]) -> dict[str, MemoryVector]:
        rows = await session.scalars(
            select(MemoryVector).where(MemoryVector.tenant == self.tenant, MemoryVector.memory_id.in_(ids))
        )
        return {row.memory_id: row for row in rows}

    def _exported(
        self, memory: Memory, versions: list[MemoryVersion], vector: MemoryVector | None
    ) -> ExportedMemory:
        embedding = None
        if vector is not None and vector.version == memory.version:
            embedding = exported_embedding(vector.model_id, open_vector(self._vault, vector))
        record = ExportedMemory(
            type="memory",
            format=FORMAT,
            id=memory.id,
            created_at=memory.created_at,
            updated_at=memory.updated_at,
            expires_at=memory.expires_at,
            # a version committed after `memory` was read waits for the next export: the record
            # stays one consistent version (and its embedding that version's)
            versions=[self._version(row) for row in versions if row.version <= memory.version],
            embedding=embedding,
            checksum="",
        )
        return record.model_copy(update={"checksum": record_checksum(record).hex()})

    def _version(self, row: MemoryVersion) -> ExportedVersion:
        document = self._vault.open(MEMORY_RECORD, row.tenant, row.memory_id, row.version, row.sealed)
        return ExportedVersion(
            version=row.version,
            created_at=row.created_at,
            author=row.author,
            content=document["content"],
            kind=document["kind"],
            tags=document["tags"],
            project=document["project"],
            session_id=document["session_id"],
            importance=document["importance"],
        )

    # The cursor carries the count and chain so far, so the last page can sign the whole file;
    # it is MACed, or a caller could have any digest of their choosing signed.

    def _pages(self) -> Cursor:
        return Cursor("memory-export", self.tenant)

    def _position(self, after: str, count: int, chain: bytes) -> str:
        state = f"{after}~{count}~{chain.hex()}"
        return f"{state}~{self._vault.mac(self.tenant, 'memory-export-cursor', state).hex()}"

    def _resume(self, cursor: str | None) -> tuple[str, int, bytes]:
        position = self._pages().decode(cursor)
        if position is None:
            return "", 0, CHAIN_START
        state, _, mac = position.rpartition("~")
        expected = self._vault.mac(self.tenant, "memory-export-cursor", state).hex()
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise InvalidArgumentError("cursor is not one this server issued")
        after, count, chain = state.rsplit("~", 2)  # made by `_position`: the MAC says so
        return after, int(count), bytes.fromhex(chain)

    # --- import -------------------------------------------------------------------------------

    async def import_lines(
        self, lines: Iterable[str], *, trust_foreign_signature: bool = False
    ) -> ImportReport:
        """Verify every line of an export (at most `MAX_IMPORT_RECORDS` records and
        `MAX_IMPORT_BYTES`), then write it; `ImportRefused` (naming the line) before any
        write if anything is wrong. `trust_foreign_signature` accepts a file another
        deployment signed (its records, count and digest are still checked)."""
        reader = self._reader(trust_foreign_signature)
        records: list[VerifiedRecord] = []
        size = 0
        try:
            for number, text in enumerate(lines, start=1):
                size += len(text.encode()) + 1
                if size > MAX_IMPORT_BYTES:
                    raise ImportRefused(number, "too_large", f"the file is over {MAX_IMPORT_BYTES} bytes")
                record = reader.line(number, text)
                if record is not None:
                    records.append(record)
                    if len(records) > MAX_IMPORT_RECORDS:
                        raise ImportRefused(
                            number, "too_large", f"more than {MAX_IMPORT_RECORDS} records in one import"
                        )
            reader.end()
        except ImportRefused as exc:
            await self._refused(exc)
            raise
        return await self._write(records, foreign=reader.foreign)

    async def import_file(self, path: Path, *, trust_foreign_signature: bool = False) -> ImportReport:
        """`import_lines` for a file of any size up to `MAX_FILE_RECORDS`, streamed twice:
        the first pass verifies it whole and keeps each record's checksum, the second writes
        the records, each checked against the first pass's checksum at its place, so a file
        changed in between is refused, never half-trusted."""
        reader = self._reader(trust_foreign_signature)
        checksums: list[bytes] = []
        try:
            for number, text in file_lines(path):
                record = reader.line(number, text)
                if record is not None:
                    checksums.append(record.checksum)
                    if len(checksums) > MAX_FILE_RECORDS:
                        raise ImportRefused(number, "too_large", f"more than {MAX_FILE_RECORDS} records")
            reader.end()
        except ImportRefused as exc:
            await self._refused(exc)
            raise
        return await self._write(self._again(path, checksums), foreign=reader.foreign)

    def _again(self, path: Path, checksums: list[bytes]) -> Iterator[VerifiedRecord]:
        """The first pass's records, read again, each the same as then (when the trailer and
        signature were checked)."""
        reader = self._reader(True)
        lines = file_lines(path)
        while reader.count < len(checksums):
            try:
                record = reader.line(*next(lines))
            except (StopIteration, ImportRefused):
                record, changed = None, True
            else:
                changed = record is not None and record.checksum != checksums[reader.count - 1]
            if changed:
                raise InvalidArgumentError(
                    f"{path} changed while it was imported, at its record {reader.count + 1}: the "
                    "records before it may be imported; import the file again to add the rest"
                )
            if record is not None:
                yield record

    def _reader(self, trust_foreign: bool) -> ExportReader:
        model = None
        if self._meaning is not None:
            model = (self._meaning.index.model_id, self._meaning.index.dimensions)
        return ExportReader(self._vault, self._limits, model, trust_foreign=trust_foreign)

    async def _refused(self, exc: ImportRefused) -> None:
        async with self._db.session() as session:
            await self._audit(session, "memory.import.refused", None, line=exc.line, check=exc.check)

    async def _write(self, records: Iterable[VerifiedRecord], *, foreign: bool) -> ImportReport:
        tally = _Tally()
        pending = iter(records)
        while batch := list(islice(pending, _BATCH)):
            written = await self._write_batch(batch)
            await self._reindex([p.memory_id for p in written if p.outcome in ("created", "renamed")])
            for placed in written:
                tally.add(placed)
                if placed.stored_vector is not None and self._meaning is not None:
                    version = len(placed.record.documents)
                    self._meaning.vectors_of(self.tenant).add(placed.memory_id, version, placed.stored_vector)
        async with self._db.session() as session:
            await self._audit(
                session,
                "memory.import.done",
                None,
                records=tally.records,
                created=tally.created,
                vectors=tally.vectors,
                foreign_signature=foreign,
            )
        if self._meaning is not None and tally.created > tally.vectors:
            self._meaning.wake()
        return ImportReport(
            records=tally.records,
            created=tally.created,
            skipped=tally.records - tally.created,
            vectors=tally.vectors,
            foreign_signature=foreign,
            items=tally.items,
            items_left_off=tally.left_off,
        )

    async def _write_batch(self, batch: list[VerifiedRecord]) -> list[_Placed]:
        """One transaction; a concurrent writer of the same id or content wins its constraint,
        and the batch is tried again (then finding that memory here)."""
        for _ in range(_ATTEMPTS):
            try:
                async with self._db.session() as session:
                    now = datetime.now(UTC)
                    return [await self._place(session, record, now) for record in batch]
            except IntegrityError:
                continue
        raise InvalidArgumentError("the memories could not be imported: concurrent writers; import again")

    async def _place(self, session: AsyncSession, record: VerifiedRecord, now: datetime) -> _Placed:
        exported, current = record.memory, record.documents[-1]
        if exported.expires_at is not None and exported.expires_at <= now:
            return _Placed(record, exported.id, "expired")
        held = (
            await session.execute(
                select(Memory.tenant, Memory.version, Memory.deleted_at).where(Memory.id == exported.id)
            )
        ).first()
        if held is not None and held.tenant == self.tenant and held.deleted_at is None:
            same = held.version == len(record.documents)
            return _Placed(record, exported.id, "present" if same else "other_version")
        content_mac = self._vault.mac(self.tenant, "content", current["content"])
        holder = await session.scalar(
            select(Memory.id).where(Memory.tenant == self.tenant, Memory.content_mac == content_mac)
        )
        if holder is not None:
            return _Placed(record, holder, "same_content")
        memory = Memory(
            id=exported.id if held is None else new_id(),
            tenant=self.tenant,
            version=1,
            kind=current["kind"],
            importance=current["importance"],
            content_mac=content_mac,
            idempotency_mac=None,
            created_at=exported.created_at,
            updated_at=exported.updated_at,
            expires_at=exported.expires_at,
            deleted_at=None,
        )
        session.add(memory)
        for version, document in zip(exported.versions, record.documents, strict=True):
            if version.version > 1:
                await drop_index(session, memory.id)
            memory.version = version.version
            write_version(
                session, self._vault, memory, document, created_at=version.created_at, author=version.author
            )
        if record.vector is not None:
            sealed = seal_vector(
                self._vault, record.model_id, self.tenant, memory.id, memory.version, record.vector
            )
            session.add(
                MemoryVector(
                    memory_id=memory.id,
                    tenant=self.tenant,
                    version=memory.version,
                    model_id=record.model_id,
                    sealed=sealed,
                    embedded_at=now,
                )
            )
        await self._audit(
            session,
            "memory.import",
            memory.id,
            versions=memory.version,
            vector=record.vector is not None,
            renamed=held is not None,
        )
        return _Placed(
            record, memory.id, "created" if held is None else "renamed", stored_vector=record.vector
        )


async def export_all(exchange: Exchange, write_line: Callable[[str], object]) -> int:
    """Every page of the tenant's export through `write_line` (a line without its newline);
    answers how many memories were written."""
    cursor: str | None = None
    written = 0
    while True:
        page = await exchange.export(cursor, MAX_PAGE)
        for line in page.lines:
            write_line(line)
        written += page.records
        if page.next_cursor is None:
            return written
        cursor = page.next_cursor
