"""Short IDs, as git abbreviates hashes: a table shows the shortest unique prefix of each ID,
and every command that takes an ID accepts any unique prefix of it.

IDs are UUIDv7 strings, whose first twelve hex digits are the creation time in milliseconds:
workflows started within the same minute share their first eight characters, and runs
dead-lettered in one batch share more. So a short ID is never a fixed width: it is as long as
its nearest neighbour (in sort order) requires, and at least `SHORTEST` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mahavishnu.platform.errors import InvalidArgumentError

__all__ = ["MIN_PREFIX", "SHORTEST", "ambiguous", "prefix_of", "short_ids"]

SHORTEST = 8
"""A short ID for display has at least this many characters (git's default is 7)."""
MIN_PREFIX = 4
"""A prefix given in place of an ID has at least this many characters."""
FULL = 36
_PREFIX = re.compile(r"[0-9a-f-]+")
_CUT_MARKS = ("…", "...")
"""A prefix copied from a table that cut the ID may carry the mark of the cut."""


def prefix_of(text: str, what: str) -> str | None:
    """The ID prefix a caller typed, normalised (lower case, a trailing cut mark dropped); None
    when it cannot be the prefix of any ID (then nothing matches it). Too short: an error."""
    prefix = text.strip().lower()
    for mark in _CUT_MARKS:
        prefix = prefix.removesuffix(mark)
    if len(prefix) > FULL or not _PREFIX.fullmatch(prefix or "-"):
        return None
    if len(prefix) < MIN_PREFIX:
        raise InvalidArgumentError(
            f"a {what} ID prefix needs at least {MIN_PREFIX} characters; give more of the ID"
        )
    return prefix


def short_ids(ids: Iterable[str], *, among: Iterable[str] = (), shortest: int = SHORTEST) -> dict[str, str]:
    """Each of `ids` mapped to its shortest prefix (at least `shortest` characters) that no other
    ID in `ids` or `among` starts with. A prefix never ends on a dash."""
    everyone = sorted(set(ids) | set(among))
    shortened: dict[str, str] = {}
    wanted = set(ids)
    for i, full in enumerate(everyone):
        if full not in wanted:
            continue
        neighbours = everyone[max(0, i - 1) : i] + everyone[i + 1 : i + 2]
        length = max([shortest, *(_common(full, n) + 1 for n in neighbours)])
        while length < len(full) and full[length - 1] == "-":
            length += 1
        shortened[full] = full[:length]
    return shortened


def _common(a: str, b: str) -> int:
    """How many leading characters `a` and `b` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def ambiguous(what: str, prefix: str, candidates: list[str], most: int = 5) -> InvalidArgumentError:
    """The error for a prefix several IDs start with, naming a few of them by their short IDs."""
    shown = sorted(short_ids(candidates[:most], among=candidates).values())
    more = " and more" if len(candidates) > most else ""
    return InvalidArgumentError(
        f"{what} ID prefix {prefix!r} is ambiguous: it matches {', '.join(shown)}{more}; give more characters"
    )
