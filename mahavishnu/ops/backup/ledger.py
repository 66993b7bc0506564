"""Verification records kept next to the archives, where a restore cannot rewrite them.

The database's `backup_events` go back in time with every restore: restore a copy from Monday
and Tuesday's verification is gone from it, so readiness would say "no backup has been verified
yet". Each verification therefore also leaves a small record beside the archive it checked, in
the same target (folder or bucket): `ARCHIVE.verified-STAMP.ok.json` (or `.failed.json`). The
name alone tells which archive, when and whether it passed, so listing the target (which
`backups()` does anyway) is enough; the body holds the detail. Only the newest record of an
archive is kept, and pruning an archive removes its records.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mahavishnu.ops.backup.targets import Target

__all__ = ["Verification", "VerificationLog", "parse_records"]

_STAMP = "%Y%m%dT%H%M%S%fZ"
_RECORD = re.compile(r"^(?P<archive>.+)\.verified-(?P<stamp>\d{8}T\d{12}Z)\.(?P<result>ok|failed)\.json$")


@dataclass(frozen=True)
class Verification:
    archive: str
    verified_at: datetime
    ok: bool
    record: str
    """The record's own name in the target."""


def parse_records(names: Iterable[str], archives: set[str]) -> dict[str, Verification]:
    """The newest verification of each of `archives` among the target's `names`."""
    newest: dict[str, Verification] = {}
    for name in names:
        match = _RECORD.match(name)
        if match is None or match["archive"] not in archives:
            continue
        try:
            at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue
        found = Verification(match["archive"], at, match["result"] == "ok", name)
        if found.archive not in newest or found.verified_at > newest[found.archive].verified_at:
            newest[found.archive] = found
    return newest


class VerificationLog:
    """Blocking calls (run them in a worker thread): they talk to the target."""

    def __init__(self, target: Target) -> None:
        self._target = target

    def write(self, archive: str, *, ok: bool, detail: str, at: datetime) -> Verification:
        name = f"{archive}.verified-{at.astimezone(UTC):{_STAMP}}.{'ok' if ok else 'failed'}.json"
        body = {"archive": archive, "ok": ok, "detail": detail, "verified_at": at.isoformat()}
        with tempfile.TemporaryDirectory(prefix="mahavishnu-verified-") as tmp:
            staged = Path(tmp) / "record.json"
            staged.write_text(json.dumps(body, indent=2))
            self._target.put(staged, name)
        for old in _records_of(archive, (n for n, _ in self._target.names())):
            if old != name:
                self._target.delete(old)
        return Verification(archive, at, ok, name)

    def detail(self, verification: Verification) -> str | None:
        with tempfile.TemporaryDirectory(prefix="mahavishnu-verified-") as tmp:
            local = Path(tmp) / "record.json"
            self._target.get(verification.record, local)
            detail = json.loads(local.read_text()).get("detail")
        return detail if isinstance(detail, str) else None

    def forget(self, archive: str, names: Iterable[str]) -> None:
        """Delete the records of an archive that is gone (`names`: the target's listing)."""
        for name in _records_of(archive, names):
            self._target.delete(name)


def _records_of(archive: str, names: Iterable[str]) -> list[str]:
    return [name for name in names if (match := _RECORD.match(name)) and match["archive"] == archive]
