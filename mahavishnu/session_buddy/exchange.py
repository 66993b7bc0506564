"""Moving one tenant's memories out and back in: a JSONL export that an import reproduces
exactly, and an import that refuses any file an export did not write as it stands.

**The file.** One line per memory (`"type": "memory"`): its id, timestamps, `expires_at`, every
version's document (content, kind, tags, project, session, importance) with its author and
time, its current embedding (base64 of little-endian float32) with the model id that made it,
and a `checksum` (sha256 of the record's canonical JSON: keys sorted, no spaces, UTF-8, times
as the export writes them). Deleted and expired memories are not exported. The last line is the trailer
(`"type": "trailer"`): the record count, a `digest` chained over the record checksums in order,
and a `signature` of the two.

**Tamper evidence.** A checksum alone proves nothing: whoever edits a record recomputes it, and
the digest with it. So the trailer is *signed* under the deployment's key ring
(`SESSION_ENCRYPTION_KEY`, through `Vault.seal_bytes`: AES-GCM authenticating the count and
digest under a data key wrapped by the ring's current key), and the signature binds the digest,
which binds every checksum in order, which binds every record. An edited record (checksum kept
or recomputed), a dropped, added or reordered one, a cut trailer: each is refused with the
check that caught it. The ring, not the per-database blind-index key, signs: the same
deployment restoring into a fresh database verifies its own exports, a key rotation keeps old
exports valid while the old key stays in the ring, and a file signed by a key the ring does not
hold comes from another deployment. Such a file is refused unless the caller passes
`trust_foreign_signature`; only the in-process API offers it (the CLI, run by whoever holds the
database and its keys), never the MCP tool, because the signature is what makes the authors and
times an import keeps worth believing, and a token holder must not be able to forge them.

**Import** verifies the whole file before writing anything, then writes in transactions of
`_BATCH` records through `write_version`, so history, blind index rows and seals are exactly
those of a store. A memory keeps its exported id when no row holds it; one already here at the
same version is skipped (importing a file twice is a no-op); an id another tenant (or a deleted
memory) holds gets a new id; content this tenant already holds is skipped. An embedding made by
the running model is stored as exported (searchable by meaning at once), any other is left to
the background embedder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.platform import Database, InvalidArgumentError
from mahavishnu.platform.arguments import describe_errors
from mahavishnu.platform.crypto import DecryptionError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.paging import MAX_PAGE, Cursor, check_limit
from mahavishnu.session_buddy.checks import label
from mahavishnu.session_buddy.memory_records import (
    Filters,
    Limits,
    NewMemory,
    checked_document,
    drop_index,
    live,
    write_version,
)
from mahavishnu.session_buddy.models import Memory, MemoryVector, MemoryVersion
from mahavishnu.session_buddy.tenant_store import TenantStore
from mahavishnu.session_buddy.vault import MEMORY_RECORD, Vault
from mahavishnu.session_buddy.vectors import open_vector, seal_vector

if TYPE_CHECKING:
    from mahavishnu.session_buddy.meaning import Meaning

__all__ = [
    "FORMAT",
    "MAX_FILE_RECORDS",
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_RECORDS",
    "MAX_LINE_BYTES",
    "Exchange",
    "ExportPage",
    "ImportRefused",
    "ImportReport",
    "ImportedMemory",
    "export_all",
]

FORMAT: Final = 1
MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest line read: one memory with its whole history."""
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
_MAX_DIMENSIONS = 8192
_CHAIN_START = hashlib.sha256(b"session-buddy memory export").digest()
_SIGNED = f"memory-export-v{FORMAT}"
_NOBODY = ""
"""The signature's tenant part: no tenant is named "" (`auth.py`), so the deployment signs,
and tenant A's export imports into tenant B of the same deployment."""

Outcome = Literal["created", "renamed", "present", "other_version", "same_content", "expired"]


# --- the file's lines -----------------------------------------------------------------------


class _Line(BaseModel):
    """Strict: a wrong type is refused, never coerced, and so is a field this format lacks."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExportedVersion(_Line):
    version: int
    created_at: AwareDatetime
    author: str
    content: str
    kind: str
    tags: list[str]
    project: str | None
    session_id: str | None
    importance: float


class ExportedEmbedding(_Line):
    model_id: str
    vector: str = Field(description="base64 of the little-endian float32 vector")


class ExportedMemory(_Line):
    type: Literal["memory"]
    format: Literal[1]
    id: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: AwareDatetime | None
    versions: list[ExportedVersion]
    embedding: ExportedEmbedding | None
    checksum: str


class ExportTrailer(_Line):
    type: Literal["trailer"]
    format: Literal[1]
    count: int
    digest: str
    signature: str


_LINE: TypeAdapter[ExportedMemory | ExportTrailer] = TypeAdapter(
    Annotated[ExportedMemory | ExportTrailer, Field(discriminator="type")]
)


def _checksum(record: ExportedMemory) -> bytes:
    canonical = json.dumps(
        record.model_dump(mode="json", exclude={"checksum"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).digest()


def _link(chain: bytes, checksum: bytes) -> bytes:
    return hashlib.sha256(chain + checksum).digest()


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


class ImportRefused(InvalidArgumentError):
    """The file was refused before anything was written; `check` names what failed."""

    def __init__(self, line: int | None, check: str, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line
        self.check = check


# --- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """A verified memory line, ready to write."""

    line: int
    memory: ExportedMemory
    documents: list[dict[str, Any]]
    checksum: bytes
    vector: NDArray[np.float32] | None = None
    """Set only when made by the running model (else the background embedder makes one)."""
    model_id: str = ""


class _Reader:
    """Checks an export line by line (format, checksum, documents, embedding), chaining the
    checksums, and at the trailer the count, the digest and the signature."""

    def __init__(
        self, vault: Vault, limits: Limits, model: tuple[str, int] | None, *, trust_foreign: bool
    ) -> None:
        self._vault = vault
        self._limits = limits
        self._model = model
        self._trust_foreign = trust_foreign
        self.count = 0
        self.foreign = False
        self._chain = _CHAIN_START
        self._ended = False

    def line(self, number: int, text: str) -> _Record | None:
        """The record on this line; None for a blank line or the trailer."""
        if not text.strip():
            return None
        if self._ended:
            raise ImportRefused(number, "after_trailer", "a line after the trailer: the file was appended to")
        if len(text.encode()) > MAX_LINE_BYTES:
            raise ImportRefused(number, "too_large", f"over {MAX_LINE_BYTES} bytes")
        try:
            parsed = _LINE.validate_json(text)
        except ValidationError as exc:
            raise ImportRefused(number, "format", _described(exc)) from None
        if isinstance(parsed, ExportTrailer):
            self._close(number, parsed)
            return None
        record = self._record(number, parsed)
        self.count += 1
        self._chain = _link(self._chain, record.checksum)
        return record

    def end(self) -> None:
        if not self._ended:
            raise ImportRefused(None, "truncated", "the file ends without its trailer line: it was cut short")

    def _record(self, number: int, memory: ExportedMemory) -> _Record:
        checksum = _checksum(memory)
        if not hmac.compare_digest(memory.checksum.encode(), checksum.hex().encode()):
            raise ImportRefused(number, "checksum", "the checksum does not match the record: it was edited")
        try:
            if label("id", memory.id, 36) != memory.id:
                raise InvalidArgumentError("id: no surrounding spaces")
            documents = [self._document(memory, v, n) for n, v in enumerate(memory.versions, start=1)]
            if not documents:
                raise InvalidArgumentError("versions: at least one")
            vector = None if memory.embedding is None else self._vector(memory.embedding)
        except InvalidArgumentError as exc:
            raise ImportRefused(number, "content", exc.message) from None
        if vector is None or memory.embedding is None:
            return _Record(number, memory, documents, checksum)
        return _Record(number, memory, documents, checksum, vector, memory.embedding.model_id)

    def _document(self, memory: ExportedMemory, version: ExportedVersion, number: int) -> dict[str, Any]:
        if version.version != number:
            raise InvalidArgumentError(f"versions[{number - 1}]: version {number} expected")
        label(f"versions[{number - 1}].author", version.author, 200)
        given = version.model_dump(include={"content", "kind", "tags", "project", "session_id", "importance"})
        try:
            document = checked_document(NewMemory(**given, expires_at=memory.expires_at), self._limits)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"versions[{number - 1}].{exc.message}") from None
        if document != given:
            raise InvalidArgumentError(
                f"versions[{number - 1}]: not as a store keeps it (text trimmed, tags sorted and unique)"
            )
        return document

    def _vector(self, embedding: ExportedEmbedding) -> NDArray[np.float32] | None:
        label("embedding.model_id", embedding.model_id, 200)
        try:
            data = base64.b64decode(embedding.vector, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError("embedding.vector: not base64") from None
        if not data or len(data) % 4 or len(data) // 4 > _MAX_DIMENSIONS:
            raise InvalidArgumentError(f"embedding.vector: 1 to {_MAX_DIMENSIONS} float32 values")
        vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(vector).all():
            raise InvalidArgumentError("embedding.vector: finite numbers only")
        if self._model is None or embedding.model_id != self._model[0]:
            return None
        if len(vector) != self._model[1]:
            raise InvalidArgumentError(
                f"embedding.vector: {len(vector)} values, but {embedding.model_id} makes {self._model[1]}"
            )
        return vector

    def _close(self, number: int, trailer: ExportTrailer) -> None:
        if trailer.count != self.count:
            raise ImportRefused(
                number,
                "count",
                f"the trailer counts {trailer.count} records but the file holds {self.count}: "
                "records were dropped or added",
            )
        if not hmac.compare_digest(trailer.digest.encode(), self._chain.hex().encode()):
            raise ImportRefused(
                number,
                "digest",
                "the records do not match the trailer's digest: they were reordered, or edited "
                "with their checksums recomputed",
            )
        try:
            token = base64.urlsafe_b64decode(trailer.signature.encode())
            self._vault.open_bytes(_SIGNED, _NOBODY, trailer.digest, trailer.count, token)
        except (binascii.Error, ValueError):
            raise ImportRefused(number, "signature", "the signature is not base64") from None
        except DecryptionError as exc:
            if exc.reason != "unknown_key":
                raise ImportRefused(
                    number, "signature", "the signature does not verify: the file was altered after export"
                ) from None
            if not self._trust_foreign:
                raise ImportRefused(
                    number,
                    "foreign_signature",
                    f"signed by another deployment ({exc.message}); a file is imported only where "
                    "it was exported, or through the CLI with trust_foreign_signature by whoever "
                    "knows where it came from",
                ) from None
            self.foreign = True
        self._ended = True


def _described(exc: ValidationError) -> str:
    errors = exc.errors()
    whole = {e["type"] for e in errors if not e["loc"]}
    if "json_invalid" in whole:
        return "not JSON"
    if whole:
        return 'not a memory or trailer line (a JSON object whose "type" is "memory" or "trailer")'
    return describe_errors(errors, within=str(errors[0]["loc"][0]))


# --- the store ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Placed:
    record: _Record
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


class Exchange(TenantStore):
    def __init__(
        self,
        db: Database,
        vault: Vault,
        limits: Limits,
        *,
        tenant: str,
        author: str,
        meaning: Meaning | None = None,
    ) -> None:
        super().__init__(db, vault, tenant=tenant, author=author)
        self._limits = limits
        self._meaning = meaning
        """The running embedder: imported vectors of its model are kept; None keeps none."""

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
                chain = _link(chain, bytes.fromhex(record.checksum))
                size += len(lines[-1])
                if size >= _PAGE_CHARS:
                    break
            records = len(lines)
            last = records == len(rows)
            if last:
                lines.append(self._trailer(count, chain))
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
            raw = open_vector(self._vault, vector).astype("<f4").tobytes()
            embedding = ExportedEmbedding(model_id=vector.model_id, vector=base64.b64encode(raw).decode())
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
        return record.model_copy(update={"checksum": _checksum(record).hex()})

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

    def _trailer(self, count: int, chain: bytes) -> str:
        digest = chain.hex()
        token = self._vault.seal_bytes(_SIGNED, _NOBODY, digest, count, b"")
        signature = base64.urlsafe_b64encode(token).decode()
        trailer = ExportTrailer(
            type="trailer", format=FORMAT, count=count, digest=digest, signature=signature
        )
        return trailer.model_dump_json()

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
            return "", 0, _CHAIN_START
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
        records: list[_Record] = []
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
            for number, text in _file_lines(path):
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

    def _again(self, path: Path, checksums: list[bytes]) -> Iterator[_Record]:
        """The first pass's records, read again, each the same as then (when the trailer and
        signature were checked)."""
        reader = self._reader(True)
        lines = _file_lines(path)
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

    def _reader(self, trust_foreign: bool) -> _Reader:
        model = None
        if self._meaning is not None:
            model = (self._meaning.index.model_id, self._meaning.index.dimensions)
        return _Reader(self._vault, self._limits, model, trust_foreign=trust_foreign)

    async def _refused(self, exc: ImportRefused) -> None:
        async with self._db.session() as session:
            await self._audit(session, "memory.import.refused", None, line=exc.line, check=exc.check)

    async def _write(self, records: Iterable[_Record], *, foreign: bool) -> ImportReport:
        tally = _Tally()
        pending = iter(records)
        while batch := list(islice(pending, _BATCH)):
            for placed in await self._write_batch(batch):
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

    async def _write_batch(self, batch: list[_Record]) -> list[_Placed]:
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

    async def _place(self, session: AsyncSession, record: _Record, now: datetime) -> _Placed:
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


def _file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a file, each line read with a bound (a huge line is refused, not
    read whole) and decoded as UTF-8."""
    with path.open("rb") as file:
        number = 0
        while raw := file.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ImportRefused(number, "too_large", f"over {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode().rstrip("\r\n")
            except UnicodeDecodeError:
                raise ImportRefused(number, "format", "not UTF-8") from None
            yield number, text


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
