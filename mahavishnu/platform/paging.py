"""Pages for every list-shaped answer of every service: a bounded `limit`, an opaque `cursor`, a `total`.

As `list_repos` does: a page resumes after the last key it showed (never an offset, so rows
added between pages shift nothing), and its cursor carries a fingerprint of the filters it was
made for, so a cursor passed back with other filters is refused instead of skipping rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from mahavishnu.platform.errors import InvalidArgumentError

__all__ = ["MAX_PAGE", "Cursor", "check_limit"]

MAX_PAGE = 200
"""The most items one answer carries, whatever was asked."""

T = TypeVar("T")


def check_limit(limit: int, *, least: int = 1) -> None:
    if not least <= limit <= MAX_PAGE:
        raise InvalidArgumentError(f"limit must be between {least} and {MAX_PAGE}")


class Cursor:
    """The cursors of one listing with one set of filters."""

    def __init__(self, listing: str, *filters: object) -> None:
        raw = json.dumps([listing, *filters], default=str, separators=(",", ":"))
        self._fingerprint = hashlib.sha256(raw.encode()).hexdigest()[:16]

    def encode(self, after: str) -> str:
        raw = json.dumps({"after": after, "f": self._fingerprint}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str | None) -> str | None:
        """The key to resume after; None without a cursor."""
        if cursor is None:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
            after, stamp = data["after"], data["f"]
        except (ValueError, KeyError, TypeError):
            raise InvalidArgumentError("cursor is not one this server issued") from None
        if not isinstance(after, str) or stamp != self._fingerprint:
            raise InvalidArgumentError(
                "cursor belongs to a listing with other filters; start again without it"
            )
        return after

    def offset(self, cursor: str | None) -> int:
        """For a ranking (search results have no stable key to resume after): the position a
        cursor made by `encode(str(position))` resumes at; 0 without one."""
        after = self.decode(cursor)
        if after is None:
            return 0
        if not after.isdigit() or len(after) > 9:
            raise InvalidArgumentError("cursor is not one this server issued")
        return int(after)

    def after(self, rows: Sequence[T], limit: int, key: Callable[[T], str]) -> str | None:
        """The cursor for the page after `rows[:limit]` (a query asks for `limit + 1` rows, so
        one more means there is more), resuming after `key` of its last row; None at the end."""
        return self.encode(key(rows[limit - 1])) if len(rows) > limit > 0 else None
