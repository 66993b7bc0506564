"""What a memory export line is, and how an export file is verified. This is a contract with
every file already written, so it changes only with `FORMAT`, apart from the store
(`exchange.py`) that reads and writes the rows as the schema changes. Writing (checksum, digest,
signature) and checking live side by side, so the two cannot disagree on what a signature binds.

**The file.** One line per memory (`"type": "memory"`): its id, timestamps, `expires_at`, every
version's document (content, kind, tags, project, session, importance) with its author and
time, its current embedding (base64 of little-endian float32) with the model id that made it,
and a `checksum` (sha256 of the record's canonical JSON: keys sorted, no spaces, UTF-8, times
as the export writes them). The last line is the trailer (`"type": "trailer"`): the record
count, a `digest` chained over the record checksums in order, and a `signature` of the two.

**Tamper evidence.** A checksum alone proves nothing: whoever edits a record recomputes it, and
the digest with it. So the trailer is *signed* under the deployment's key ring
(`SESSION_ENCRYPTION_KEY`, through `Vault.seal_bytes`: AES-GCM authenticating the count and
digest under a data key wrapped by the ring's current key), and the signature binds the digest,
which binds every checksum in order, which binds every record. An edited record (checksum kept
or recomputed), a dropped, added or reordered one, a cut trailer: each is refused with the
check that caught it. The ring, not the per-database blind-index key, signs: the same
deployment restoring into a fresh database verifies its own exports, a key rotation keeps old
exports valid while the old key stays in the ring, and a file signed by a key the ring does not
hold comes from another deployment. Such a file is refused unless the reader is told to trust
it (`trust_foreign`): the signature is what makes the authors and times an import keeps worth
believing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mahavishnu.platform import InvalidArgumentError
from mahavishnu.platform.arguments import describe_errors
from mahavishnu.platform.crypto import DecryptionError
from mahavishnu.session_buddy.checks import label
from mahavishnu.session_buddy.memory_records import Limits, NewMemory, checked_document
from mahavishnu.session_buddy.vault import Vault

__all__ = [
    "CHAIN_START",
    "FORMAT",
    "MAX_LINE_BYTES",
    "ExportReader",
    "ExportTrailer",
    "ExportedEmbedding",
    "ExportedMemory",
    "ExportedVersion",
    "ImportRefused",
    "VerifiedRecord",
    "chained",
    "exported_embedding",
    "file_lines",
    "record_checksum",
    "signed_trailer",
]

FORMAT: Final = 1
MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest line read: one memory with its whole history."""
_MAX_DIMENSIONS = 8192
CHAIN_START: Final = hashlib.sha256(b"session-buddy memory export").digest()
"""The digest of no records: each record's checksum is `chained` onto it in order."""
_SIGNED = f"memory-export-v{FORMAT}"
_NOBODY = ""
"""The signature's tenant part: no tenant is named "" (`auth.py`), so the deployment signs,
and tenant A's export imports into tenant B of the same deployment."""


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


def record_checksum(record: ExportedMemory) -> bytes:
    """sha256 of the record's canonical JSON without its `checksum` (which holds this, in hex)."""
    canonical = json.dumps(
        record.model_dump(mode="json", exclude={"checksum"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).digest()


def chained(chain: bytes, checksum: bytes) -> bytes:
    """The digest with one more record: what binds the records' order as well as their checksums."""
    return hashlib.sha256(chain + checksum).digest()


def exported_embedding(model_id: str, vector: NDArray[np.float32]) -> ExportedEmbedding:
    """A vector as a line carries it: base64 of little-endian float32 (`ExportReader` reads it)."""
    raw = vector.astype("<f4").tobytes()
    return ExportedEmbedding(model_id=model_id, vector=base64.b64encode(raw).decode())


def signed_trailer(vault: Vault, count: int, chain: bytes) -> ExportTrailer:
    """The trailer of `count` records whose checksums chain to `chain`, signed under the
    deployment's key ring: what `ExportReader` checks at the end of a file."""
    digest = chain.hex()
    token = vault.seal_bytes(_SIGNED, _NOBODY, digest, count, b"")
    signature = base64.urlsafe_b64encode(token).decode()
    return ExportTrailer(type="trailer", format=FORMAT, count=count, digest=digest, signature=signature)


# --- verifying ----------------------------------------------------------------------------------


class ImportRefused(InvalidArgumentError):
    """The file was refused before anything was written; `check` names what failed."""

    def __init__(self, line: int | None, check: str, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line
        self.check = check


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A verified memory line, ready to write."""

    line: int
    memory: ExportedMemory
    documents: list[dict[str, Any]]
    checksum: bytes
    vector: NDArray[np.float32] | None = None
    """Set only when made by the running model (else the background embedder makes one)."""
    model_id: str = ""


class ExportReader:
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
        self._chain = CHAIN_START
        self._ended = False

    def line(self, number: int, text: str) -> VerifiedRecord | None:
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
        self._chain = chained(self._chain, record.checksum)
        return record

    def end(self) -> None:
        if not self._ended:
            raise ImportRefused(None, "truncated", "the file ends without its trailer line: it was cut short")

    def _record(self, number: int, memory: ExportedMemory) -> VerifiedRecord:
        checksum = record_checksum(memory)
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
            return VerifiedRecord(number, memory, documents, checksum)
        return VerifiedRecord(number, memory, documents, checksum, vector, memory.embedding.model_id)

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


def file_lines(path: Path) -> Iterator[tuple[int, str]]:
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
