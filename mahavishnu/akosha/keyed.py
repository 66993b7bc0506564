"""A WHERE clause for a set of (source, memory_id) keys that the databases answer by index.

`(source, memory_id) IN (VALUES ...)` reads the whole table on SQLite (its planner does not
use the primary key for a row-value list): at 200,000 records, 70 ms for 80 keys. Grouped by
source, `source = ? AND memory_id IN (...)` is one index range per source on both databases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm import InstrumentedAttribute

__all__ = ["keys_in"]


def keys_in(
    source: InstrumentedAttribute[str], memory_id: InstrumentedAttribute[str], keys: Iterable[tuple[str, str]]
) -> ColumnElement[bool]:
    """Rows whose (source, memory_id) is one of `keys`."""
    by_source: defaultdict[str, set[str]] = defaultdict(set)
    for key_source, key_id in keys:
        by_source[key_source].add(key_id)
    if not by_source:
        return false()
    return or_(*(and_(source == s, memory_id.in_(sorted(ids))) for s, ids in sorted(by_source.items())))
