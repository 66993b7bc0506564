"""Which sources a caller may read: the tag scope of its token, applied to source names.

A token's tags name the sources it may read, as they name the repositories it may see in
Mahavishnu; a token without tags, and an admin's (whoever may ingest may read what it wrote),
reads every source. A source outside the scope is "not found", never "forbidden".
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, true

from mahavishnu.akosha.models import Record
from mahavishnu.platform import Principal

__all__ = ["in_scope", "readable_sources"]


def readable_sources(principal: Principal) -> frozenset[str] | None:
    """The sources `principal` may read; None for every one."""
    if principal.role == "admin" or not principal.tags:
        return None
    return principal.tags


def in_scope(principal: Principal) -> ColumnElement[bool]:
    """A condition on `akosha_records` rows: the row's source is one the caller may read."""
    sources = readable_sources(principal)
    return true() if sources is None else Record.source.in_(sorted(sources))
