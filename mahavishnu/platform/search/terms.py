"""The words of a text, as keyword search sees them: the same function cuts memories when they
are stored and queries when they are asked, so what one finds the other was given.

Coding sessions are full of identifiers, so a word is a run of letters, digits and `_ . / : -`
inside a text: `tests/unit/test_auth.py::test_expiry` is kept whole, and its parts are words
too (split at `/ . : -`, then at `_`), so `test_auth`, `auth` and the whole path all find it.
Text is NFKC-normalised and case-folded first (a full-width `E1234` and `e1234` are one word).

Stop words are indexed like any other word (BM25 already gives them little weight); hybrid search
leaves them out only when it looks for the words a question is anchored on (`fusion.py`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Final

__all__ = ["MAX_TERMS", "MAX_WORD_CHARS", "STOP_WORDS", "content_words", "normalise", "terms"]

MAX_WORD_CHARS = 200
"""Longer runs (a base64 blob, a minified line) are cut: they are not words anyone types."""
MAX_TERMS = 4096
"""Distinct words kept per text: bounds the index rows one memory can make."""

_STOP_WORDS = """a about above after again against all am an and any are aren as at be because been
    before being below between both but by can could did didn do does doesn doing don down
    during each few for from further had has have having he her here hers herself him
    himself his how i if in into is isn it its itself just may me might more most must my
    myself no nor not now of off on once only or other our ours ourselves out over own s
    same shall she should so some such t than that the their theirs them themselves then
    there these they this those through to too under until up very was wasn we were weren
    what when where which while who whom why will with would you your yours yourself
    yourselves"""
STOP_WORDS: Final = frozenset(_STOP_WORDS.split())
"""English function words: they say nothing about which memory answers a question."""

_RUN = re.compile(r"[\w][\w./:-]*")
_PARTS = re.compile(r"[./:-]+")
_EDGE = "./:-_"


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(run: str) -> list[str]:
    whole = run.strip(_EDGE)[:MAX_WORD_CHARS]
    if not whole:
        return []
    found = [whole]
    parts = [p for p in _PARTS.split(whole) if p.strip(_EDGE)]
    if len(parts) > 1:
        found += [p.strip(_EDGE) for p in parts]
    for part in parts:
        pieces = [piece for piece in part.split("_") if piece]
        if len(pieces) > 1:
            found += pieces
    return found


def terms(text: str) -> Counter[str]:
    """Each word of `text` with how often it occurs (at most `MAX_TERMS` distinct words)."""
    counts: Counter[str] = Counter()
    for match in _RUN.finditer(normalise(text)):
        for word in _words(match.group()):
            if word in counts or len(counts) < MAX_TERMS:
                counts[word] += 1
    return counts


def content_words(text: str) -> list[str]:
    """The distinct words of `text` that are not stop words, in order."""
    return [word for word in terms(text) if word not in STOP_WORDS]
