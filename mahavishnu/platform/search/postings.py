"""The in-process keyword index, one per tenant: BM25 over blind tokens in numpy, so a search
ranks 100k memories in about a millisecond instead of summing every posting in SQL.

Each tenant's memories have slots; each token a posting list of (slot, occurrences,
generation) in growing arrays. A memory's new version takes a new generation, so its old
postings go stale at once without being searched for and removed: a ranking keeps only the
postings whose generation is the slot's current one, and the lists are compacted once stale
entries outnumber the live ones. The scores are the ones Session-Buddy's `keyword.py` computes
in SQL (the same document frequencies, lengths and constants). The index is a cache: its owner
rebuilds it at start, follows other processes' writes and re-checks every hit before showing it
(Session-Buddy's `keywords.py`).

Touched only from the event loop (a ranking takes about a millisecond: not worth a thread).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mahavishnu.platform.search.bm25 import K1, B, KeywordRanking

__all__ = ["IndexedMemory", "Postings", "TenantPostings"]

_NEVER = np.inf


@dataclass(frozen=True, slots=True)
class IndexedMemory:
    """What the index holds of one memory's current version."""

    memory_id: str
    version: int
    length: int
    """Words in the content (`Memory.term_count`)."""
    expires_at: float | None
    """A POSIX timestamp: an expired memory stays indexed until it is purged, but never ranks."""
    words: Mapping[bytes, int]
    """Each blind token with its occurrences."""


class _Posting:
    """One token's entries: parallel arrays that double as they fill."""

    __slots__ = ("counts", "generations", "size", "slots")

    def __init__(self) -> None:
        self.slots = np.empty(4, dtype=np.int32)
        self.counts = np.empty(4, dtype=np.int32)
        self.generations = np.empty(4, dtype=np.int64)
        self.size = 0

    def append(self, slot: int, count: int, generation: int) -> None:
        if self.size == len(self.slots):
            self._resize(2 * self.size)
        self.slots[self.size] = slot
        self.counts[self.size] = count
        self.generations[self.size] = generation
        self.size += 1

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Only the entries `mask` marks (of the first `size`)."""
        slots, counts, generations = (
            a[: self.size][mask] for a in (self.slots, self.counts, self.generations)
        )
        self.size = len(slots)
        self._resize(max(4, self.size))
        self.slots[: self.size], self.counts[: self.size], self.generations[: self.size] = (
            slots,
            counts,
            generations,
        )

    def _resize(self, capacity: int) -> None:
        for name in ("slots", "counts", "generations"):
            old = getattr(self, name)
            grown = np.empty(capacity, dtype=old.dtype)
            grown[: self.size] = old[: self.size]
            setattr(self, name, grown)


class TenantPostings:
    """One tenant's memories and their postings."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._versions: list[int] = []
        self._distinct: list[int] = []
        self._free: list[int] = []
        self._generation = np.zeros(64, dtype=np.int64)
        """The slot's current generation; 0 for a free slot (no posting has generation 0)."""
        self._lengths = np.zeros(64, dtype=np.float64)
        self._expires = np.full(64, _NEVER, dtype=np.float64)
        self._postings: dict[bytes, _Posting] = {}
        self._next_generation = 1
        self._live_entries = 0
        self._stale_entries = 0

    def __len__(self) -> int:
        return len(self._slots)

    def version_of(self, memory_id: str) -> int | None:
        slot = self._slots.get(memory_id)
        return None if slot is None else self._versions[slot]

    def put(self, memory: IndexedMemory) -> None:
        """Index `memory`'s version, replacing whatever version of it was indexed."""
        slot = self._slots.get(memory.memory_id)
        if slot is None:
            slot = self._free.pop() if self._free else self._grow()
            self._slots[memory.memory_id] = slot
            self._ids[slot] = memory.memory_id
        else:
            self._retire(slot)
        generation = self._next_generation
        self._next_generation += 1
        self._generation[slot] = generation
        self._versions[slot] = memory.version
        self._lengths[slot] = memory.length
        self._expires[slot] = _NEVER if memory.expires_at is None else memory.expires_at
        self._distinct[slot] = len(memory.words)
        for token, count in memory.words.items():
            posting = self._postings.get(token)
            if posting is None:
                posting = self._postings[token] = _Posting()
            posting.append(slot, count, generation)
        self._live_entries += len(memory.words)
        self._compact_if_stale()

    def remove(self, memory_id: str) -> None:
        slot = self._slots.pop(memory_id, None)
        if slot is None:
            return
        self._retire(slot)
        self._generation[slot] = 0
        self._ids[slot] = None
        self._expires[slot] = _NEVER
        self._free.append(slot)
        self._compact_if_stale()

    def rank(
        self,
        tokens: Sequence[bytes],
        *,
        now: float,
        among: Collection[str] | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> KeywordRanking:
        """BM25 of every memory holding one of `tokens` (only `among` when given), the page at
        `offset`, best first and newest (greatest id) first among equals: `keyword_scores`'
        answer, from memory."""
        used = len(self._ids)
        eligible = (self._generation[:used] > 0) & (self._expires[:used] > now)
        if among is not None:
            wanted = np.zeros(used, dtype=np.bool_)
            wanted[[s for i in among if (s := self._slots.get(i)) is not None]] = True
            eligible &= wanted
        documents = int(eligible.sum())
        if documents == 0:
            return KeywordRanking([], 0)
        length_ratio = self._lengths[:used] / max(float(self._lengths[:used][eligible].mean()), 1.0)
        scores = np.zeros(used, dtype=np.float64)
        matched = np.zeros(used, dtype=np.bool_)
        weights: dict[bytes, float] = {}
        for token in dict.fromkeys(tokens):
            posting = self._postings.get(token)
            if posting is None:
                continue
            slots = posting.slots[: posting.size]
            current = self._generation[slots] == posting.generations[: posting.size]
            slots = slots[current]
            if not len(slots):
                continue
            weight = math.log(1 + (documents - len(slots) + 0.5) / (len(slots) + 0.5))
            weights[token] = weight
            occurrences = posting.counts[: posting.size][current].astype(np.float64)
            scores[slots] += (
                weight * occurrences * (K1 + 1) / (occurrences + K1 * (1 - B + B * length_ratio[slots]))
            )
            matched[slots] = True
        candidates = np.flatnonzero(matched & eligible)
        if not weights or not len(candidates):
            return KeywordRanking([], 0)
        page = self._page(candidates, scores[candidates], offset + limit)[offset:]
        return KeywordRanking(page, len(candidates), frozenset(weights), sum(weights.values()))

    def _page(
        self, slots: NDArray[np.intp], scores: NDArray[np.float64], count: int
    ) -> list[tuple[str, float]]:
        """The first `count` (memory id, score), ties broken by id descending. Every candidate
        scoring at least the `count`-th score is sorted, so the order is the same whatever
        `count` a page asks for (a cut inside a tie would make pages disagree)."""
        if len(slots) > count:
            threshold = np.partition(scores, len(scores) - count)[len(scores) - count]
            kept = scores >= threshold
            slots, scores = slots[kept], scores[kept]
        ranked = sorted(
            ((self._ids[int(s)] or "", float(v)) for s, v in zip(slots, scores, strict=True)), reverse=True
        )
        ranked.sort(key=lambda pair: -pair[1])  # stable: ids stay descending among equal scores
        return ranked[:count]

    def _retire(self, slot: int) -> None:
        """The slot's postings go stale (its generation is about to change)."""
        self._live_entries -= self._distinct[slot]
        self._stale_entries += self._distinct[slot]
        self._distinct[slot] = 0

    def _compact_if_stale(self) -> None:
        if self._stale_entries <= max(self._live_entries, 1024):
            return
        for token, posting in list(self._postings.items()):
            posting.keep(
                self._generation[posting.slots[: posting.size]] == posting.generations[: posting.size]
            )
            if not posting.size:
                del self._postings[token]
        self._stale_entries = 0

    def _grow(self) -> int:
        slot = len(self._ids)
        if slot == len(self._generation):
            self._generation = np.concatenate([self._generation, np.zeros(slot, dtype=np.int64)])
            self._lengths = np.concatenate([self._lengths, np.zeros(slot, dtype=np.float64)])
            self._expires = np.concatenate([self._expires, np.full(slot, _NEVER, dtype=np.float64)])
        self._ids.append(None)
        self._versions.append(0)
        self._distinct.append(0)
        return slot


class Postings:
    """Every tenant's postings, kept apart: `tenant(t)` is all a search touches."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantPostings] = {}

    def tenant(self, tenant: str) -> TenantPostings:
        return self._tenants.setdefault(tenant, TenantPostings())

    def tenants(self) -> Iterable[str]:
        return self._tenants.keys()

    def size(self) -> int:
        return sum(len(t) for t in self._tenants.values())
