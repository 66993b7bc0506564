"""Short backup IDs: unique at the length shown, taken back as any unique prefix (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from mahavishnu.ops.backup.archive import archive_name
from mahavishnu.ops.backup.ids import backup_id, match_backup, short_id_length
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError

START = datetime(2026, 1, 1, tzinfo=UTC)


def names_sharing_an_id_prefix(size: int) -> tuple[str, str]:
    """Two archive names whose IDs start with the same `size` hex digits (found by search)."""
    seen: dict[str, str] = {}
    for i in count():
        name = archive_name("mahavishnu", START + timedelta(microseconds=i), encrypted=False)
        prefix = backup_id(name)[:size]
        if prefix in seen:
            return seen[prefix], name
        seen[prefix] = name
    raise AssertionError("unreachable")


def test_the_shown_length_grows_until_every_id_is_unique() -> None:
    first, second = names_sharing_an_id_prefix(5)
    ids = [backup_id(first), backup_id(second)]
    assert short_id_length(ids[:1]) == 8
    shared = next(i for i, (a, b) in enumerate(zip(*ids, strict=True)) if a != b)
    assert short_id_length(ids) == max(8, shared + 1)
    many = [backup_id(f"mahavishnu-{i}") for i in range(5000)]
    length = short_id_length(many)
    assert len({i[:length] for i in many}) == len(many)
    assert len({i[: length - 1] for i in many}) < len(many) or length == 8


def test_an_id_prefix_shared_by_two_archives_is_ambiguous_and_a_longer_one_is_not() -> None:
    first, second = names_sharing_an_id_prefix(4)
    names = [first, second]
    prefix = backup_id(first)[:4]
    with pytest.raises(InvalidArgumentError, match="ambiguous: it matches 2 backups") as caught:
        match_backup(prefix, names, service="mahavishnu")
    assert first in caught.value.message
    assert second in caught.value.message
    assert match_backup(backup_id(second)[:12].upper(), names, service="mahavishnu") == second
    assert match_backup(first, names, service="mahavishnu") == first


def test_too_short_foreign_and_unknown_queries() -> None:
    names = [archive_name("mahavishnu", START, encrypted=False)]
    with pytest.raises(InvalidArgumentError, match="at least 4 hex digits"):
        match_backup(backup_id(names[0])[:3], names, service="mahavishnu")
    with pytest.raises(InvalidArgumentError, match="is not a backup"):
        match_backup("echo-2026", names, service="mahavishnu")
    with pytest.raises(NotFoundError, match="no backup of mahavishnu matches"):
        match_backup("mahavishnu-2025", names, service="mahavishnu")
