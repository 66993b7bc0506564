"""Hybrid ranking: keyword (BM25) and meaning (cosine) scores fused with a weight that depends
on the query, not plain reciprocal rank fusion.

Plain RRF gives both lists the same say, so when keyword matching is weak (a paraphrased
question shares only common words with its answer) the keyword list's noise pulls good
semantic hits down: measured on bench/memory_quality.py, RRF loses to meaning alone on
paraphrases. So the keyword list's weight is gated:

- when the query names an identifier (an error code, a path, a test name: digits, `_`, `/`,
  `.` or `::` inside a word, camelCase) and some memory holds it, keywords lead;
- otherwise keywords only break near-ties of meaning: on bench/memory_quality.py a keyword
  weight of 0.1 for prose questions already lowered their recall@5 (seed 7: 0.67 to 0.63), 0.2
  did on seed 12 (0.70 to 0.63): the words a paraphrase shares with memories are common ones.

Either weight grows with how confident the best keyword match is (its BM25 score over what a
memory holding each matched query word once scores).

Scores are normalised within the candidate pool (BM25 over the best one, cosine min-max), and a
memory not yet embedded keeps its keyword score: hybrid still finds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from mahavishnu.session_buddy.keyword import KeywordRanking
from mahavishnu.session_buddy.terms import terms

__all__ = ["fuse", "identifier_words", "keyword_weight"]

_IDENTIFIER: Final = re.compile(r"\d|\w[_/\\]\w|\w\.\w|::|[a-z][A-Z]")

IDENTIFIER_WEIGHT: Final = (0.55, 0.35)
"""Keyword weight for a query whose identifier some memory holds: base, plus this much times
the match's confidence."""
PROSE_WEIGHT: Final = 0.02
"""At most this keyword weight for any other query, times the match's confidence: a tie-breaker
(and what ranks a matching memory that is not embedded yet above the unrelated ones)."""


def identifier_words(query: str) -> list[str]:
    """The words of `query` that look like identifiers rather than prose, as keyword search
    cuts them (so their blind tokens can be looked up)."""
    found: list[str] = []
    for raw in query.split():
        word = raw.strip("\"'`()[]{}<>,;!?")
        if _IDENTIFIER.search(word):
            found += list(terms(word))[:1]
    return found


def keyword_weight(ranking: KeywordRanking, *, identifier_matched: bool) -> float:
    """How much the keyword list counts in the fusion, 0 to 1 (meaning gets the rest)."""
    if not ranking.rows or ranking.ceiling <= 0:
        return 0.0
    confidence = min(1.0, ranking.rows[0][1] / ranking.ceiling)
    if identifier_matched:
        base, extra = IDENTIFIER_WEIGHT
        return base + extra * confidence
    return PROSE_WEIGHT * confidence


def fuse(
    keyword: Sequence[tuple[str, float]], cosines: Mapping[str, float], weight: float
) -> list[tuple[str, float]]:
    """Every candidate of either list with its fused score, best first (ties: newest id first)."""
    best = max((score for _, score in keyword), default=0.0)
    keyword_part = {i: score / best for i, score in keyword} if best > 0 else {}
    low, high = min(cosines.values(), default=0.0), max(cosines.values(), default=0.0)
    spread = high - low
    meaning_part = {i: (c - low) / spread if spread > 0 else 1.0 for i, c in cosines.items()}
    fused = {
        i: weight * keyword_part.get(i, 0.0) + (1 - weight) * meaning_part.get(i, 0.0)
        for i in keyword_part.keys() | meaning_part.keys()
    }
    return sorted(fused.items(), key=lambda item: (item[1], item[0]), reverse=True)
