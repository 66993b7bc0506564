"""The key ring Akosha's store is sealed under, and sealing one memory's document with it.

A document is encrypted with the platform's envelope encryption (`KeyRing`: AES-256-GCM, a data
key per value) and bound to what it is (source, tenant, memory, version) as associated data: a
sealed value copied into another memory's or tenant's row does not open.
"""

from __future__ import annotations

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.akosha.wire import MemoryDocument
from mahavishnu.platform.crypto import KeyRing, associated_data
from mahavishnu.platform.key_files import key_ring_or_dev_file

__all__ = ["DEV_KEY_FILE", "key_ring", "open_document", "seal_document"]

DEV_KEY_FILE = "akosha.key"
"""Where development keeps the key it made, in the data folder (never in production)."""


def key_ring(settings: AkoshaSettings) -> KeyRing:
    """The ring from AKOSHA_ENCRYPTION_KEY; in development without one, a key made once in the
    data folder (readable by its owner only), with a warning at every start."""
    return key_ring_or_dev_file(
        settings,
        settings.encryption_key,
        setting="AKOSHA_ENCRYPTION_KEY",
        dev_file=DEV_KEY_FILE,
        holds="every record",
    )


def _binding(source: str, tenant: str, memory_id: str, version: int) -> bytes:
    return associated_data("akosha", "memory", source, tenant, memory_id, str(version))


def seal_document(
    ring: KeyRing, source: str, tenant: str, memory_id: str, version: int, document: MemoryDocument
) -> bytes:
    plaintext = document.model_dump_json().encode()
    return ring.encrypt(plaintext, associated=_binding(source, tenant, memory_id, version))


def open_document(
    ring: KeyRing, source: str, tenant: str, memory_id: str, version: int, sealed: bytes
) -> MemoryDocument:
    """The document `seal_document` was given; `DecryptionError` if it was altered or moved."""
    plaintext = ring.decrypt(sealed, associated=_binding(source, tenant, memory_id, version))
    return MemoryDocument.model_validate_json(plaintext)
