"""The key ring Akosha's store is sealed under, and sealing one memory's document with it.

A document is encrypted with the platform's envelope encryption (`KeyRing`: AES-256-GCM, a data
key per value) and bound to what it is (source, tenant, memory, version) as associated data: a
sealed value copied into another memory's or tenant's row does not open.
"""

from __future__ import annotations

import os
from pathlib import Path

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.akosha.wire import MemoryDocument
from mahavishnu.platform import ConfigurationError, get_logger
from mahavishnu.platform.crypto import KeyRing, associated_data, generate_key

__all__ = ["DEV_KEY_FILE", "key_ring", "open_document", "seal_document"]

log = get_logger("akosha.keys")

DEV_KEY_FILE = "akosha.key"
"""Where development keeps the key it made, in the data folder (never in production)."""


def key_ring(settings: AkoshaSettings) -> KeyRing:
    """The ring from AKOSHA_ENCRYPTION_KEY; in development without one, a key made once in the
    data folder (readable by its owner only), with a warning at every start."""
    if settings.encryption_key is not None:
        return KeyRing.parse(settings.encryption_key, setting="AKOSHA_ENCRYPTION_KEY")
    if settings.env == "production":  # check_secure refuses this first; never fall through
        raise ConfigurationError("production mode needs AKOSHA_ENCRYPTION_KEY")
    path = settings.data_dir / DEV_KEY_FILE
    created = _make_once(path)
    log.warning(
        "development_encryption_key",
        file=str(path),
        created=created,
        advice="set AKOSHA_ENCRYPTION_KEY before keeping anything that matters; "
        "whoever reads this file reads every record",
    )
    return KeyRing.parse(path.read_text().strip(), setting=str(path))


def _make_once(path: Path) -> bool:
    """Write a new key unless the file exists (O_EXCL: two first starts make one key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as out:
        out.write(generate_key() + "\n")
    return True


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
