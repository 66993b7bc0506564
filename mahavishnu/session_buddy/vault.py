"""Session-Buddy's cryptography: sealed records, blind tokens and MACs, under one key ring.

- **Sealed records**: every memory version (content and metadata as one JSON document) is
  encrypted with the platform's envelope encryption (`KeyRing`, AES-256-GCM), bound to what
  the record is (`associated_data`: kind of record, tenant, id, version): a sealed value copied
  into another tenant's or record's row does not open.
- **Blind tokens** (16 bytes) for words, tags and projects, and **MACs** (32 bytes) for whole
  contents and idempotency keys: HMAC-SHA256 under the *index key*, with the tenant and a
  domain in the message, so one word has different tokens in two tenants and as a tag or a
  word. Storage sees which rows share a token, never the word.
- **The index key** is random, made once, and kept sealed under the key ring in its own row
  (`IndexKey`): rotating the ring re-seals that row like any record, so tokens never change
  and, once the sweep is done, the old key is no longer needed for anything.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from sqlalchemy.exc import IntegrityError

from mahavishnu.platform import ConfigurationError, Database
from mahavishnu.platform.crypto import KEY_BYTES, KeyRing, associated_data
from mahavishnu.platform.key_files import key_ring_or_dev_file
from mahavishnu.session_buddy.models import TOKEN_BYTES, IndexKey
from mahavishnu.session_buddy.settings import SessionBuddySettings

__all__ = ["DEV_KEY_FILE", "MEMORY_RECORD", "Vault", "key_ring", "open_vault", "reseal_index_key"]

MEMORY_RECORD = "memory"
"""What a sealed memory version is bound to (with tenant, id and version)."""

DEV_KEY_FILE = "session-buddy.key"
"""Where development keeps the key it made, in the data folder (never in production)."""
_INDEX_KEY = "blind-index"
_INDEX_KEY_AAD = associated_data("session-buddy", "index-key", _INDEX_KEY)


def key_ring(settings: SessionBuddySettings) -> KeyRing:
    """The ring from SESSION_ENCRYPTION_KEY; in development without one, a key made once in
    the data folder (readable by the owner only), with a warning at every start."""
    return key_ring_or_dev_file(
        settings,
        settings.encryption_key,
        setting="SESSION_ENCRYPTION_KEY",
        dev_file=DEV_KEY_FILE,
        holds="every memory",
    )


class Vault:
    def __init__(self, ring: KeyRing, index_key: bytes) -> None:
        if len(index_key) != KEY_BYTES:
            raise ConfigurationError("the blind-index key has the wrong length")
        self.ring = ring
        self._index_key = index_key

    def __repr__(self) -> str:
        return f"Vault(ring={self.ring!r})"

    def seal(self, record: str, tenant: str, record_id: str, version: int, document: dict[str, Any]) -> bytes:
        plaintext = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        return self.ring.encrypt(plaintext, associated=_binding(record, tenant, record_id, version))

    def open(self, record: str, tenant: str, record_id: str, version: int, sealed: bytes) -> dict[str, Any]:
        """The document `seal` was given; `DecryptionError` if it was altered or moved."""
        binding = _binding(record, tenant, record_id, version)
        opened = json.loads(self.ring.decrypt(sealed, associated=binding))
        if not isinstance(opened, dict):
            raise TypeError("a sealed record holds a JSON object")
        return opened

    def seal_bytes(self, record: str, tenant: str, record_id: str, version: int, data: bytes) -> bytes:
        """Like `seal`, for a value that is bytes already (an embedding)."""
        return self.ring.encrypt(data, associated=_binding(record, tenant, record_id, version))

    def open_bytes(self, record: str, tenant: str, record_id: str, version: int, sealed: bytes) -> bytes:
        return self.ring.decrypt(sealed, associated=_binding(record, tenant, record_id, version))

    def token(self, tenant: str, domain: str, value: str) -> bytes:
        """The blind token of `value` (a word, a tag, a project...) in `domain`, for `tenant`."""
        return self.mac(tenant, domain, value)[:TOKEN_BYTES]

    def mac(self, tenant: str, domain: str, value: str) -> bytes:
        return hmac.digest(self._index_key, associated_data(domain, tenant, value), "sha256")

    def chain(self, previous: bytes, entry: bytes) -> bytes:
        """An audit entry's digest: keyed, so whoever can write the database but has no key
        cannot recompute the chain after editing it."""
        return hmac.digest(self._index_key, associated_data("audit", previous, entry), "sha256")


def _binding(record: str, tenant: str, record_id: str, version: int) -> bytes:
    return associated_data("session-buddy", record, tenant, record_id, str(version))


async def open_vault(db: Database, ring: KeyRing) -> Vault:
    """The vault over this database: its index key opened with `ring`, made on first use."""
    for _ in range(2):  # a concurrent first start may insert between our read and our write
        async with db.session() as session:
            row = await session.get(IndexKey, _INDEX_KEY)
            if row is not None:
                return Vault(ring, ring.decrypt(row.sealed, associated=_INDEX_KEY_AAD))
        try:
            async with db.session() as session:
                key = secrets.token_bytes(KEY_BYTES)
                session.add(IndexKey(name=_INDEX_KEY, sealed=ring.encrypt(key, associated=_INDEX_KEY_AAD)))
            return Vault(ring, key)
        except IntegrityError:
            continue
    raise ConfigurationError("the blind-index key could not be read or made")


async def reseal_index_key(db: Database, ring: KeyRing) -> bool:
    """Re-wrap the index key under the ring's current key; True when it needed it."""
    async with db.session() as session:
        row = await session.get(IndexKey, _INDEX_KEY)
        if row is None or ring.is_current(row.sealed):
            return False
        row.sealed = ring.rotate(row.sealed)
        return True
