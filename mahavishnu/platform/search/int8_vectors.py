"""Vectors kept as int8 with a scale per row: a quarter of float32's memory, for vectors that are
searched rarely enough that a coarser first pass is worth it.

A row is quantised symmetrically (`round(v * 127 / max|v|)`, scale `max|v| / 127`), so a dot
product with a float32 query is off by at most about `scale * sum|q| / 2`; a search therefore
only *proposes* candidates (several times as many as asked for) and the caller rescores them
in float32 from where the exact vectors are kept. Like the float32 index, it scans exactly
while small and past `ANN_THRESHOLD` rows asks a usearch HNSW graph over int8 codes (cosine is
unchanged by a row's scale, so each row goes in at full int8 range).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from usearch.index import Index

from mahavishnu.platform.search.vector_index import ANN_THRESHOLD

__all__ = ["Candidate", "Int8Vectors", "dequantize", "quantize"]

Vector = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Candidate:
    key: str
    version: int
    approximate: float


def quantize(vector: Vector) -> tuple[NDArray[np.int8], float]:
    """`vector` as int8 and the scale that maps it back (`codes * scale`)."""
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    if peak == 0.0:
        return np.zeros(vector.shape, dtype=np.int8), 0.0
    scale = peak / 127.0
    return np.clip(np.rint(vector / scale), -127, 127).astype(np.int8), scale


def dequantize(codes: NDArray[np.int8], scale: float) -> Vector:
    return (codes.astype(np.float32) * np.float32(scale)).astype(np.float32)


class Int8Vectors:
    """Rows of int8 codes with their scales, addressed by a slot per key."""

    def __init__(self, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.dimensions = dimensions
        self._threshold = ann_threshold
        self._graph: Index | None = None
        self._codes: NDArray[np.int8] = np.zeros((64, dimensions), dtype=np.int8)
        self._scales: NDArray[np.float32] = np.zeros(64, dtype=np.float32)
        self._keys: list[str | None] = []
        self._versions: list[int] = []
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    @property
    def nbytes(self) -> int:
        """Memory the rows take (codes and scales)."""
        return int(self._codes.nbytes + self._scales.nbytes)

    def version_of(self, key: str) -> int | None:
        slot = self._slots.get(key)
        return None if slot is None else self._versions[slot]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def add(self, key: str, version: int, vector: Vector) -> None:
        codes, scale = quantize(vector)
        self.add_codes(key, version, codes, scale)

    def add_codes(self, key: str, version: int, codes: NDArray[np.int8], scale: float) -> None:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._free.pop() if self._free else self._grow()
                self._slots[key] = slot
                self._keys[slot] = key
            elif self._graph is not None:
                self._graph.remove(slot)
            self._versions[slot] = version
            self._codes[slot] = codes
            self._scales[slot] = scale
            if self._graph is not None:
                self._graph.add(slot, codes)
            elif len(self._slots) >= self._threshold:
                self._build_graph()

    def remove(self, key: str) -> None:
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                return
            self._keys[slot] = None
            self._codes[slot] = 0
            self._scales[slot] = 0.0
            self._free.append(slot)
            if self._graph is not None:
                self._graph.remove(slot)

    def propose(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Candidate]:
        """The `count` rows whose approximate similarity to `query` is highest, best first."""
        with self._lock:
            if count <= 0:
                return []
            if among is None and self._graph is not None:
                matches = self._graph.search(query, count)
                slots = np.asarray(matches.keys, dtype=np.int64)
                scores = 1.0 - np.asarray(matches.distances, dtype=np.float32)
            else:
                if among is not None:
                    slots = np.fromiter(
                        (s for k in among if (s := self._slots.get(k)) is not None), dtype=np.int64
                    )
                else:
                    slots = np.fromiter(self._slots.values(), dtype=np.int64)
                if not len(slots):
                    return []
                scores = (self._codes[slots].astype(np.float32) @ query) * self._scales[slots]
            if len(slots) > count:
                top = np.argpartition(-scores, count - 1)[:count]
                slots, scores = slots[top], scores[top]
            order = np.argsort(-scores, kind="stable")
            found = []
            for position in order:
                slot = int(slots[position])
                key = self._keys[slot] if 0 <= slot < len(self._keys) else None
                if key is not None:
                    found.append(Candidate(key, self._versions[slot], float(scores[position])))
            return found

    def _grow(self) -> int:
        slot = len(self._keys)
        if slot == len(self._codes):
            codes = np.zeros((2 * len(self._codes), self.dimensions), dtype=np.int8)
            codes[:slot] = self._codes
            scales = np.zeros(2 * len(self._scales), dtype=np.float32)
            scales[:slot] = self._scales
            self._codes, self._scales = codes, scales
        self._keys.append(None)
        self._versions.append(0)
        return slot

    def _build_graph(self) -> None:
        graph = Index(ndim=self.dimensions, metric="cos", dtype="i8", connectivity=16, expansion_search=128)
        slots = np.fromiter(self._slots.values(), dtype=np.int64)
        graph.add(slots, self._codes[slots])
        self._graph = graph
