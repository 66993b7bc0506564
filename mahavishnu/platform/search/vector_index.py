"""The in-process index of memory embeddings, one per tenant: a search scans only the caller's
tenant's vectors, never a shared structure another tenant's vectors are in.

Each tenant's vectors sit in one float32 matrix (unit rows, so a dot product is the cosine):
an exact scan while the tenant has fewer than `ANN_THRESHOLD` vectors, and past it a usearch
HNSW graph built over the matrix (then kept up to date on every add and remove). The index
is a cache of the sealed rows: it is rebuilt from them at start, and whatever it answers is
re-checked in SQL (live, current version, filters), so a stale entry can cost a slot in a
ranking but never shows a memory that should not be shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mahavishnu.platform.search.slotted_rows import ANN_THRESHOLD, INITIAL_ROWS, SlottedRows

__all__ = ["ANN_THRESHOLD", "Neighbour", "TenantVectors", "VectorIndex"]

Vector = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Neighbour:
    memory_id: str
    version: int
    similarity: float


class TenantVectors(SlottedRows):
    """One tenant's vectors: float32 rows of a growing matrix, addressed by a slot per memory."""

    def __init__(self, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        super().__init__(dimensions, ann_threshold=ann_threshold)
        self._matrix: Vector = np.zeros((INITIAL_ROWS, dimensions), dtype=np.float32)

    def add(self, memory_id: str, version: int, vector: Vector) -> None:
        self._put([(memory_id, version, vector)])

    def add_many(self, rows: Iterable[tuple[str, int, Vector]]) -> None:
        """Several (memory_id, version, vector) at once: one bulk add to the graph."""
        self._put(rows)

    def nearest(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Neighbour]:
        """The `count` vectors most similar to `query`, best first; only those of `among` when
        given (an exact scan of just those rows: what a narrow filter needs)."""
        with self._lock:
            if among is not None:
                slots = self._slots_among(among)
                return self._neighbours(slots, self._matrix[slots] @ query, count)
            if self._graph is not None:
                return self._neighbours(*self._searched(query, count), count)
            used = len(self._keys)
            scores = self._matrix[:used] @ query
            if self._free:
                scores[self._free] = -np.inf
            return self._neighbours(np.arange(used), scores, count)

    def similarity(self, memory_ids: Sequence[str], query: Vector) -> dict[str, float]:
        """The cosine of `query` with each of `memory_ids` that has a vector."""
        with self._lock:
            pairs = [(i, s) for i in memory_ids if (s := self._slots.get(i)) is not None]
            if not pairs:
                return {}
            scores = self._matrix[[s for _, s in pairs]] @ query
            return {i: float(v) for (i, _), v in zip(pairs, scores, strict=True)}

    def _neighbours(
        self, slots: NDArray[np.int64], scores: NDArray[np.float32], count: int
    ) -> list[Neighbour]:
        return [Neighbour(key, version, score) for key, version, score in self._top(slots, scores, count)]

    def _capacity(self) -> int:
        return len(self._matrix)

    def _enlarge(self, rows: int) -> None:
        grown = np.zeros((rows, self.dimensions), dtype=np.float32)
        grown[: len(self._matrix)] = self._matrix
        self._matrix = grown

    def _write(self, slot: int, row: Any) -> None:
        self._matrix[slot] = row

    def _clear(self, slot: int) -> None:
        self._matrix[slot] = 0.0

    def _graph_rows(self, slots: NDArray[np.int64]) -> NDArray[Any]:
        return self._matrix[slots]


class VectorIndex:
    """Every tenant's vectors of one model, kept apart: `tenant(t)` is all a search touches."""

    def __init__(self, model_id: str, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.model_id = model_id
        self.dimensions = dimensions
        self._threshold = ann_threshold
        self._tenants: dict[str, TenantVectors] = {}

    def tenant(self, tenant: str) -> TenantVectors:
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants.setdefault(
                tenant, TenantVectors(self.dimensions, ann_threshold=self._threshold)
            )
        return found

    def size(self) -> int:
        return sum(len(t) for t in self._tenants.values())
