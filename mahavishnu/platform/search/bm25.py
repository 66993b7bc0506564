"""Okapi BM25's constants and what a keyword ranking answers, wherever it is computed (in SQL by
Session-Buddy before its index is ready, in process by `postings.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["K1", "B", "KeywordRanking"]

K1 = 1.2
B = 0.75


@dataclass(frozen=True, slots=True)
class KeywordRanking:
    rows: list[tuple[str, float]]
    """(document id, score) of the page asked for, best first."""
    total: int
    """Documents that match at least one of the query's words."""
    matched: frozenset[bytes] = field(default_factory=frozenset)
    """The query's tokens that some live document has."""
    ceiling: float = 0.0
    """What a document of average length holding each matched word once scores: hybrid search
    reads `top score / ceiling` as how confident the keyword match is."""
