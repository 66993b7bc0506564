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

A prose question is often *anchored* on a word most memories near it hold too ("why do the
billing pods keep restarting?" in a store full of billing notes): the model's vector of the
whole question is then mostly that word, and ranks any billing note above the answer, which
says "OOM-killed" rather than "restarting". So when at least half of the memories nearest the
whole question hold one of its words, the ranking splits the work: holding the anchor words is
the keyword part (exact), and meaning compares the rest of the question ("why do the pods keep
restarting?"), embedded on its own, with each candidate.

Last, near-duplicates (most of their words in common, such as the same log line with another
number) give way: each scores half when a better candidate nearly repeats it, so the first page
shows distinct memories rather than five copies of one.

Scores are normalised within the candidate pool (BM25 over the best one, cosine min-max), and a
memory not yet embedded keeps its keyword score: hybrid still finds it.

The constants below were chosen on bench/memory_quality.py seeds 1-5 (3,000 distractors). On
seeds 7, 12 and 42 they raise paraphrase recall@5 from 0.68 (meaning alone) to 0.90 with 3,000
distractors and from 0.63 to 0.87 with 10,000. Neither half does it alone: replayed over the
fp32 model's vectors, anchors alone reach 0.81 and 0.71, near-duplicates alone 0.74 and 0.69.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from mahavishnu.platform.search.bm25 import KeywordRanking
from mahavishnu.platform.search.terms import STOP_WORDS, terms

__all__ = [
    "anchors",
    "fuse",
    "fuse_anchored",
    "give_way_to_near_duplicates",
    "identifier_words",
    "keyword_weight",
    "rest_of",
]

_IDENTIFIER: Final = re.compile(r"\d|\w[_/\\]\w|\w\.\w|::|[a-z][A-Z]")

IDENTIFIER_WEIGHT: Final = (0.55, 0.35)
"""Keyword weight for a query whose identifier some memory holds: base, plus this much times
the match's confidence."""
PROSE_WEIGHT: Final = 0.02
"""At most this keyword weight for any other query, times the match's confidence: a tie-breaker
(and what ranks a matching memory that is not embedded yet above the unrelated ones)."""

ANCHOR_NEIGHBOURS: Final = 20
"""How many of the memories nearest the whole question are read to find its anchor words."""
ANCHOR_SHARE: Final = 0.5
"""A question word is an anchor when at least this share of those memories hold it."""
ANCHOR_WEIGHT: Final = 0.5
"""In an anchored ranking, what holding the anchor words counts (meaning gets the rest): as much
as the whole spread of meaning, so a memory holding them is only passed by one without them
that is far closer in meaning."""
WHOLE_QUESTION_SHARE: Final = 0.25
"""Of the meaning part of an anchored ranking, what the whole question's cosine counts (the
rest's cosine gets the remainder): a hedge for when the rest of the question says little."""
NEAR_DUPLICATE: Final = 0.8
"""Two memories are near-duplicates when this share of their distinct words is common to both
(Jaccard): the same note with one number changed, not two notes about one subject."""


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
    meaning_part = _spread(cosines)
    return _ranked(
        {
            i: weight * keyword_part.get(i, 0.0) + (1 - weight) * meaning_part.get(i, 0.0)
            for i in keyword_part.keys() | meaning_part.keys()
        }
    )


def anchors(words: Mapping[str, bytes], nearest: Sequence[Collection[bytes]]) -> list[str]:
    """The words (of a question's content `words`, each with its token) that at least
    `ANCHOR_SHARE` of the `nearest` memories' token sets hold."""
    if not nearest:
        return []
    return [
        word
        for word, token in words.items()
        if sum(token in held for held in nearest) >= ANCHOR_SHARE * len(nearest)
    ]


def rest_of(query: str, anchored: Collection[str]) -> str | None:
    """`query` without its words that hold an anchor; None when no word but stop words is left
    (the rest would say nothing to compare)."""
    kept = [raw for raw in query.split() if not terms(raw).keys() & anchored]
    rest = " ".join(kept)
    return rest if terms(rest).keys() - STOP_WORDS - set(anchored) else None


def fuse_anchored(
    candidates: Collection[str],
    held: Mapping[str, Collection[bytes]],
    anchor_tokens: Collection[bytes],
    rest: Mapping[str, float],
    whole: Mapping[str, float],
) -> list[tuple[str, float]]:
    """Each candidate scored by the share of `anchor_tokens` it holds (`held`: its tokens) and
    by the cosines of the rest of the question and of the whole one, best first."""
    rest_part, whole_part = _spread(rest), _spread(whole)
    return _ranked(
        {
            i: ANCHOR_WEIGHT * _share(held.get(i, ()), anchor_tokens)
            + (1 - ANCHOR_WEIGHT)
            * (
                (1 - WHOLE_QUESTION_SHARE) * rest_part.get(i, 0.0)
                + WHOLE_QUESTION_SHARE * whole_part.get(i, 0.0)
            )
            for i in candidates
        }
    )


def give_way_to_near_duplicates(
    ranked: Sequence[tuple[str, float]], held: Mapping[str, Collection[bytes]]
) -> list[tuple[str, float]]:
    """`ranked` with the score of each candidate that a better one nearly repeats halved, best
    first again (only candidates in `held`, with their tokens, are compared)."""
    seen: list[frozenset[bytes]] = []
    scores: dict[str, float] = {}
    for memory_id, score in ranked:
        words = held.get(memory_id)
        if words is None:
            scores[memory_id] = score
            continue
        mine = frozenset(words)
        repeated = any(len(mine & other) >= NEAR_DUPLICATE * len(mine | other) for other in seen)
        scores[memory_id] = score / 2 if repeated else score
        seen.append(mine)
    return _ranked(scores)


def _share(held: Collection[bytes], tokens: Collection[bytes]) -> float:
    return sum(token in held for token in tokens) / len(tokens) if tokens else 0.0


def _spread(cosines: Mapping[str, float]) -> dict[str, float]:
    """Cosines min-max scaled to 0..1 within the pool (all 1 when they are equal)."""
    low, high = min(cosines.values(), default=0.0), max(cosines.values(), default=0.0)
    spread = high - low
    return {i: (c - low) / spread if spread > 0 else 1.0 for i, c in cosines.items()}


def _ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
