"""A service's key ring from its setting, or in development a key made once in its data folder:
what Session-Buddy and Akosha both do before sealing anything. The file is created with O_EXCL
and mode 0600, so two first starts make one key and only the owner reads it; every start that
uses it warns, since whoever reads the file reads everything sealed under it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.observability import get_logger
from mahavishnu.platform.settings import PlatformSettings

__all__ = ["key_ring_or_dev_file"]

log = get_logger("key_files")


def key_ring_or_dev_file(
    settings: PlatformSettings, key: SecretStr | None, *, setting: str, dev_file: str, holds: str
) -> KeyRing:
    """The ring from `key` (the value of the variable named `setting`); without one, outside
    production, the key in `dev_file` of the data folder (made when missing). `holds` says
    what the key protects, for the warning."""
    if key is not None:
        return KeyRing.parse(key, setting=setting)
    if settings.env == "production":  # check_secure refuses this first; never fall through
        raise ConfigurationError(f"production mode needs {setting}")
    path = settings.data_dir / dev_file
    created = _make_once(path)
    log.warning(
        "development_encryption_key",
        file=str(path),
        created=created,
        advice=f"set {setting} before keeping anything that matters; whoever reads this file reads {holds}",
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
