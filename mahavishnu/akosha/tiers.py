"""Akosha's vectors in three tiers, one search over all of them.

- hot: float32 in memory (`TenantVectors`: exact scan, an HNSW graph past its threshold);
- warm: int8 codes with a scale per row in memory (`Int8Vectors`), a quarter of the memory;
- cold: int8 codes in sealed Parquet segments on disk (`ColdTier`), none of it in memory.

A search asks each tier: hot answers exact float32 similarities; warm and cold propose
`OVERSAMPLE` times as many candidates as asked for, which are rescored in float32 from the
store's sealed vectors (`VectorStore`) before they compete with the hot ones, so a record
ranks the same whichever tier it sits in. The aging policy (`AgingPolicy`) places a record by
the later of when it was written and when a reader last saw it; `age` moves what the policy
says has changed tier, adding each vector to its new tier before taking it from the old one,
so a search running meanwhile finds it in one or the other (answers are merged by key), and a
search whose cold scan (in a thread) overlapped a move asks the tiers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from mahavishnu.akosha.cold_tier import ColdTier
from mahavishnu.akosha.vector_store import VectorStore
from mahavishnu.platform.search.int8_vectors import Int8Vectors
from mahavishnu.platform.search.vector_index import ANN_THRESHOLD, Neighbour, TenantVectors

__all__ = ["OVERSAMPLE", "TIERS", "AgingPolicy", "Tier", "TieredVectors"]

Tier = Literal["hot", "warm", "cold"]
TIERS: tuple[Tier, ...] = ("hot", "warm", "cold")
Vector = NDArray[np.float32]

OVERSAMPLE = 4
"""Candidates a warm or cold tier proposes per result asked for, before float32 rescoring."""
RESCORE_MARGIN = 0.05
"""How far below its float32 similarity an int8 one may fall (measured: under 0.02 on unit
vectors of 384 dimensions): a candidate this far under the hot tier's `count`-th best is
dropped before it is read from the store."""
_MOVE_BATCH = 1000
_COLD_BATCH = 100_000
"""Vectors clustered into segments at once (150 MB of float32 at 384 dimensions)."""


@dataclass(frozen=True, slots=True)
class AgingPolicy:
    hot_days: float
    warm_days: float

    def tier_for(self, created_at: datetime, accessed_at: datetime | None, now: datetime) -> Tier:
        """Hot while written or read within `hot_days`; warm within `warm_days`; cold after."""
        last = created_at if accessed_at is None else max(created_at, accessed_at)
        if now - last < timedelta(days=self.hot_days):
            return "hot"
        if now - last < timedelta(days=self.warm_days):
            return "warm"
        return "cold"


class TieredVectors:
    def __init__(self, store: VectorStore, cold: ColdTier, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.store = store
        self.dimensions = store.dimensions
        self.hot = TenantVectors(store.dimensions, ann_threshold=ann_threshold)
        self.warm = Int8Vectors(store.dimensions, ann_threshold=ann_threshold)
        self.cold = cold
        self.accessed: dict[str, datetime] = {}
        """When a reader last saw each record, as far as this process knows."""
        self._unsaved_access: dict[str, datetime] = {}
        self._moves = 0
        """Counts batches of moves: a search that overlapped one asks the tiers again."""

    def __len__(self) -> int:
        return len(self.hot) + len(self.warm) + len(self.cold)

    def sizes(self) -> dict[Tier, int]:
        return {"hot": len(self.hot), "warm": len(self.warm), "cold": len(self.cold)}

    def tier_of(self, key: str) -> Tier | None:
        if self.hot.version_of(key) is not None:
            return "hot"
        if key in self.warm:
            return "warm"
        return "cold" if key in self.cold else None

    def version_of(self, key: str) -> int | None:
        for version in (self.hot.version_of(key), self.warm.version_of(key), self.cold.version_of(key)):
            if version is not None:
                return version
        return None

    async def add(self, rows: Sequence[tuple[str, int, Vector]]) -> None:
        """Vectors just made (new records or versions): hot, and out of any other tier. The
        graph inserts run in threads (`add_many_off_loop`): the event loop goes on meanwhile."""
        await self.hot.add_many_off_loop(rows)
        for key, _, _ in rows:
            self.warm.remove(key)
        self.cold.forget(key for key, _, _ in rows)

    def remove(self, key: str) -> None:
        self.hot.remove(key)
        self.warm.remove(key)
        self.cold.forget([key])
        self.accessed.pop(key, None)
        self._unsaved_access.pop(key, None)

    def touch(self, keys: Iterable[str], when: datetime) -> None:
        """Readers saw these records now: the next aging run keeps (or brings) them hot."""
        for key in keys:
            self.accessed[key] = when
            self._unsaved_access[key] = when

    async def save_access(self) -> None:
        """Write the access times seen since the last call to the store (they survive a restart)."""
        unsaved, self._unsaved_access = self._unsaved_access, {}
        if unsaved:
            try:
                await self.store.touch(unsaved)
            except BaseException:
                self._unsaved_access = {**unsaved, **self._unsaved_access}
                raise

    async def nearest(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Neighbour]:
        """The `count` records most similar to `query` across the tiers, best first."""
        wanted = None if among is None else list(among)
        while True:  # again if vectors moved while the cold tier was scanned in its thread
            moves = self._moves
            found = {n.memory_id: n for n in self.hot.nearest(query, count, wanted)}
            proposed = [
                *self.warm.propose(query, count * OVERSAMPLE, wanted),
                *await asyncio.to_thread(self.cold.propose, query, count * OVERSAMPLE, wanted),
            ]
            if moves == self._moves:
                break
        if len(found) >= count:  # a candidate that cannot beat the hot results is not read
            floor = sorted((n.similarity for n in found.values()), reverse=True)[count - 1] - RESCORE_MARGIN
            proposed = [c for c in proposed if c.approximate >= floor]
        if proposed:
            exact = await self.store.vectors([c.key for c in proposed])
            for candidate in proposed:
                held = exact.get(candidate.key)
                if held is None or held[0] != candidate.version:
                    continue
                similarity = float(held[1] @ query)
                known = found.get(candidate.key)
                if known is None or known.similarity < similarity:
                    found[candidate.key] = Neighbour(candidate.key, candidate.version, similarity)
        return sorted(found.values(), key=lambda n: -n.similarity)[:count]

    async def similarity(self, keys: Sequence[str], query: Vector) -> dict[str, float]:
        """The cosine of `query` with each of `keys` that has a vector, in whichever tier."""
        scores = self.hot.similarity(keys, query)
        elsewhere = [key for key in keys if key not in scores and (key in self.warm or key in self.cold)]
        if elsewhere:
            for key, (_, vector) in (await self.store.vectors(elsewhere)).items():
                scores[key] = float(vector @ query)
        return scores

    async def load(
        self, current: Callable[[str], tuple[int, datetime] | None], policy: AgingPolicy, now: datetime
    ) -> set[str]:
        """Fill the tiers from the store at start: each current stored vector (`current(key)`:
        the record's live version and creation time) in the tier the policy names; cold ones
        the segment files hold already are not read again. Answers the keys loaded."""
        in_segments = await asyncio.to_thread(self.cold.load)
        loaded: set[str] = set()
        placed: dict[str, tuple[int, Tier]] = {}
        async for batch in self.store.placements():
            for placement in batch:
                record = current(placement.key)
                if record is None or record[0] != placement.version:
                    continue
                if placement.accessed_at is not None:
                    self.accessed[placement.key] = placement.accessed_at
                tier = policy.tier_for(record[1], placement.accessed_at, now)
                loaded.add(placement.key)
                if tier != "cold" or in_segments.get(placement.key) != placement.version:
                    placed[placement.key] = (placement.version, tier)
        self.cold.forget(key for key in in_segments if key not in loaded or key in placed)
        await self._place(placed)
        return loaded

    async def age(
        self, current: Callable[[str], tuple[int, datetime] | None], policy: AgingPolicy, now: datetime
    ) -> dict[Tier, int]:
        """Move every vector whose tier the policy now names differently; answers how many
        moved into each tier."""
        await self.save_access()
        moves: dict[str, tuple[int, Tier]] = {}
        for tier, keys in (("hot", self.hot.keys()), ("warm", self.warm.keys()), ("cold", self.cold.keys())):
            for key in keys:
                record = current(key)
                if record is None:
                    continue
                wanted = policy.tier_for(record[1], self.accessed.get(key), now)
                if wanted != tier:
                    moves[key] = (record[0], wanted)
        await self._place(moves)
        await asyncio.to_thread(self.cold.compact)
        return {tier: sum(1 for _, t in moves.values() if t == tier) for tier in TIERS}

    async def _place(self, placements: dict[str, tuple[int, Tier]]) -> None:
        """Put each key's stored vector (of the version given) in its tier, then take it out of
        the others. Cold ones are written together at the end (up to `_COLD_BATCH` at a time), so
        a segment is one cluster of many, not whatever one read batch held."""
        keys = list(placements)
        to_cold: list[tuple[str, int, Vector]] = []
        for start in range(0, len(keys), _MOVE_BATCH):
            held = await self.store.vectors(keys[start : start + _MOVE_BATCH])
            into: dict[Tier, list[tuple[str, int, Vector]]] = {tier: [] for tier in TIERS}
            for key, (version, vector) in held.items():
                if placements[key][0] == version:  # else the record moved on: a new vector comes
                    into[placements[key][1]].append((key, version, vector))
            await self.warm.add_many_off_loop(into["warm"])
            await self.hot.add_many_off_loop(into["hot"])
            for key, version, _ in into["warm"]:  # (a newer version added meanwhile stays)
                if self.hot.version_of(key) == version:
                    self.hot.remove(key)
            for key, version, _ in into["hot"]:
                if self.warm.version_of(key) == version:
                    self.warm.remove(key)
            self.cold.forget(key for key, _, _ in [*into["warm"], *into["hot"]])
            self._moves += 1
            to_cold += into["cold"]
            if len(to_cold) >= _COLD_BATCH or start + _MOVE_BATCH >= len(keys):
                await self._freeze(to_cold)
                to_cold = []

    async def _freeze(self, rows: list[tuple[str, int, Vector]]) -> None:
        """Write `rows` to cold segments, then take them out of memory."""
        if not rows:
            return
        await asyncio.to_thread(self.cold.write, rows)
        for key, _, _ in rows:
            self.hot.remove(key)
            self.warm.remove(key)
        self._moves += 1
