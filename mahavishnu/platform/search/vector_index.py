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

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from usearch.index import Index

__all__ = ["ANN_THRESHOLD", "Neighbour", "TenantVectors", "VectorIndex"]

Vector = NDArray[np.float32]

ANN_THRESHOLD: Final = 20_000
"""Vectors in one tenant past which an HNSW graph answers instead of an exact scan (an exact
scan of 20k x 384 takes about 3 ms on two cores; see bench/memory_speed.py)."""


@dataclass(frozen=True, slots=True)
class Neighbour:
    memory_id: str
    version: int
    similarity: float


class TenantVectors:
    """One tenant's vectors: rows of a growing matrix, addressed by a slot per memory."""

    def __init__(self, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.dimensions = dimensions
        self._threshold = ann_threshold
        self._matrix: Vector = np.zeros((64, dimensions), dtype=np.float32)
        self._ids: list[str | None] = []
        self._versions: list[int] = []
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._graph: Index | None = None
        self._lock = threading.Lock()  # searches run in threads while the workers add

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def approximate(self) -> bool:
        return self._graph is not None

    def version_of(self, memory_id: str) -> int | None:
        slot = self._slots.get(memory_id)
        return None if slot is None else self._versions[slot]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def add(self, memory_id: str, version: int, vector: Vector) -> None:
        with self._lock:
            slot = self._slots.get(memory_id)
            if slot is None:
                slot = self._free.pop() if self._free else self._grow()
                self._slots[memory_id] = slot
                self._ids[slot] = memory_id
            elif self._graph is not None:
                self._graph.remove(slot)
            self._versions[slot] = version
            self._matrix[slot] = vector
            if self._graph is not None:
                self._graph.add(slot, vector)
            elif len(self._slots) >= self._threshold:
                self._build_graph()

    def remove(self, memory_id: str) -> None:
        with self._lock:
            slot = self._slots.pop(memory_id, None)
            if slot is None:
                return
            self._ids[slot] = None
            self._matrix[slot] = 0.0
            self._free.append(slot)
            if self._graph is not None:
                self._graph.remove(slot)

    def nearest(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Neighbour]:
        """The `count` vectors most similar to `query`, best first; only those of `among` when
        given (an exact scan of just those rows: what a narrow filter needs)."""
        with self._lock:
            if among is not None:
                slots = np.fromiter(
                    (s for i in among if (s := self._slots.get(i)) is not None), dtype=np.int64
                )
                return self._ranked(slots, self._matrix[slots] @ query, count)
            if self._graph is not None:
                found = self._graph.search(query, count)
                keys = np.asarray(found.keys, dtype=np.int64)
                return self._ranked(keys, 1.0 - np.asarray(found.distances, dtype=np.float32), count)
            used = len(self._ids)
            scores = self._matrix[:used] @ query
            if self._free:
                scores[self._free] = -np.inf
            return self._ranked(np.arange(used), scores, count)

    def similarity(self, memory_ids: Sequence[str], query: Vector) -> dict[str, float]:
        """The cosine of `query` with each of `memory_ids` that has a vector."""
        with self._lock:
            pairs = [(i, s) for i in memory_ids if (s := self._slots.get(i)) is not None]
            if not pairs:
                return {}
            scores = self._matrix[[s for _, s in pairs]] @ query
            return {i: float(v) for (i, _), v in zip(pairs, scores, strict=True)}

    def _ranked(self, slots: NDArray[np.int64], scores: NDArray[np.float32], count: int) -> list[Neighbour]:
        if len(slots) > count:
            top = np.argpartition(-scores, count - 1)[:count]
            slots, scores = slots[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        found = []
        for position in order:
            slot = int(slots[position])
            memory_id = self._ids[slot] if 0 <= slot < len(self._ids) else None
            if memory_id is not None and np.isfinite(scores[position]):
                found.append(Neighbour(memory_id, self._versions[slot], float(scores[position])))
        return found

    def _grow(self) -> int:
        slot = len(self._ids)
        if slot == len(self._matrix):
            grown = np.zeros((2 * len(self._matrix), self.dimensions), dtype=np.float32)
            grown[:slot] = self._matrix
            self._matrix = grown
        self._ids.append(None)
        self._versions.append(0)
        return slot

    def _build_graph(self) -> None:
        graph = Index(ndim=self.dimensions, metric="ip", dtype="f32", connectivity=16, expansion_search=128)
        slots = np.fromiter(self._slots.values(), dtype=np.int64)
        graph.add(slots, self._matrix[slots])
        self._graph = graph


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
