"""Backup IDs that fit a table and can be typed back, as git abbreviates commit hashes.

An archive's ID is the SHA-256 of its name, in hex: stable (nothing stored), the same wherever
the archive is listed. Tables show its shortest prefix of at least `MIN_SHOWN` characters that
no other archive of the service shares; commands take any unique prefix of an ID (at least
`MIN_TYPED` characters) or of an archive name, the full name, or `latest`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from itertools import pairwise

from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError

__all__ = ["MIN_SHOWN", "MIN_TYPED", "backup_id", "match_backup", "short_id_length"]

MIN_SHOWN = 8
MIN_TYPED = 4
_HEX = re.compile(r"^[0-9a-f]+$")
_SHOWN_AT_MOST = 5
"""Candidates named in an "ambiguous" error."""


def backup_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def short_id_length(ids: Sequence[str]) -> int:
    """The shortest length, at least MIN_SHOWN, at which every ID's prefix is unique."""
    # Character by character is what we want: these are hex strings, not paths.
    shared = (len(os.path.commonprefix([a, b])) for a, b in pairwise(sorted(ids)))  # noqa: RUF071
    return max([MIN_SHOWN, *(size + 1 for size in shared)])


def match_backup(query: str, names: Sequence[str], *, service: str) -> str:
    """The one archive among `names` (newest first) that `query` means, or a clear error."""
    if query in names:
        return query
    lowered = query.lower()
    is_id = bool(_HEX.match(lowered)) and len(lowered) >= MIN_TYPED
    if not is_id and not query.startswith(f"{service}-"):
        raise InvalidArgumentError(
            f"{query[:120]!r} is not a backup: give an ID from `backup list` (at least {MIN_TYPED} "
            f"hex digits), an archive name ({service}-...) or 'latest'"
        )
    found = [n for n in names if n.startswith(query) or (is_id and backup_id(n).startswith(lowered))]
    if not found:
        raise NotFoundError(f"no backup of {service} matches {query[:120]!r}")
    if len(found) > 1:
        ids = {n: backup_id(n) for n in found}
        length = short_id_length(list(ids.values()))
        shown = ", ".join(f"{ids[n][:length]} ({n})" for n in found[:_SHOWN_AT_MOST])
        more = f" and {len(found) - _SHOWN_AT_MOST} more" if len(found) > _SHOWN_AT_MOST else ""
        raise InvalidArgumentError(
            f"{query!r} is ambiguous: it matches {len(found)} backups: {shown}{more}; type more of it"
        )
    return found[0]
