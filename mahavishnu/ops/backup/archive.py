"""The backup archive: a tar.gz of the files plus `manifest.json` (version, schema revision,
created-at, SHA-256 and size of every file), optionally encrypted as a whole with Fernet."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from mahavishnu.platform.errors import InvalidArgumentError

__all__ = ["archive_name", "archive_pattern", "read_archive", "timestamp_of", "write_archive"]

MANIFEST = "manifest.json"


def archive_pattern(service: str) -> re.Pattern[str]:
    """Names of `service`'s archives. The service's name comes first, so services sharing a
    folder or an S3 prefix each list, prune and restore only their own."""
    return re.compile(rf"^{re.escape(service)}-(\d{{8}}T\d{{6}}\d{{6}}Z)\.tar\.gz(\.enc)?$")


def archive_name(service: str, created_at: datetime, *, encrypted: bool) -> str:
    stamp = f"{created_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
    return f"{service}-{stamp}.tar.gz" + (".enc" if encrypted else "")


def timestamp_of(service: str, name: str) -> datetime | None:
    """When an archive was made, from its name; None for a name no archive of `service` can have
    (another pattern, or the pattern with an impossible date such as month 13)."""
    match = archive_pattern(service).match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_archive(folder: Path, meta: dict[str, Any], out: Path, fernet: Fernet | None) -> dict[str, Any]:
    """Pack every file of `folder` with a manifest of checksums; returns the manifest."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    manifest = {**meta, "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        encoded = json.dumps(manifest, indent=2, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(encoded)
        tar.addfile(info, io.BytesIO(encoded))
        for path in files:
            tar.add(path, arcname=path.name, recursive=False)
    data = buffer.getvalue()
    out.write_bytes(fernet.encrypt(data) if fernet is not None else data)
    return manifest


def _unpack(tar: tarfile.TarFile, dest: Path) -> None:
    """Write the archive's files into `dest`. An archive holds a flat list of regular files
    (`write_archive` makes no folders or links), so anything else is refused outright: stricter
    than `extractall(filter="data")`, which Python 3.11.0-3.11.3 (Debian 12's) lack."""
    for member in tar.getmembers():
        if not member.isfile() or member.name in {"", ".", ".."} or Path(member.name).name != member.name:
            raise InvalidArgumentError(f"the archive holds an unexpected entry {member.name[:80]!r}")
        source = tar.extractfile(member)
        if source is None:
            raise InvalidArgumentError(f"the archive entry {member.name[:80]!r} cannot be read")
        with source, (dest / member.name).open("wb") as out:
            shutil.copyfileobj(source, out)


def read_archive(path: Path, dest: Path, fernet: Fernet | None) -> tuple[dict[str, Any], list[str]]:
    """Unpack into `dest` and recompute every checksum; returns the manifest and the problems found."""
    data = path.read_bytes()
    if path.name.endswith(".enc"):
        if fernet is None:
            raise InvalidArgumentError("this archive is encrypted; set the service's BACKUP_ENCRYPTION_KEY")
        try:
            data = fernet.decrypt(data)
        except InvalidToken:
            raise InvalidArgumentError("the archive cannot be decrypted with the configured key") from None
    try:
        # The whole gzip stream first: its end marker and CRC prove nothing was cut off. Read
        # through tarfile alone, a cut inside the tar's trailing zero blocks went unnoticed.
        unpacked = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(unpacked), mode="r:") as tar:
            _unpack(tar, dest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidArgumentError(f"the archive is damaged: {type(exc).__name__}") from None
    try:
        manifest: dict[str, Any] = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        raise InvalidArgumentError("the archive has no readable manifest.json") from None
    problems = []
    for name, expected in manifest.get("files", {}).items():
        member = dest / name
        if not member.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(member) != expected["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    return manifest, problems
