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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mahavishnu.platform.search.slotted_rows import ANN_THRESHOLD, INITIAL_ROWS, SlottedRows

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


class Int8Vectors(SlottedRows):
    """Rows of int8 codes with their scales, addressed by a slot per key."""

    graph_metric = "cos"
    graph_dtype = "i8"

    def __init__(self, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        super().__init__(dimensions, ann_threshold=ann_threshold)
        self._codes: NDArray[np.int8] = np.zeros((INITIAL_ROWS, dimensions), dtype=np.int8)
        self._scales: NDArray[np.float32] = np.zeros(INITIAL_ROWS, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Memory the rows take (codes and scales)."""
        return int(self._codes.nbytes + self._scales.nbytes)

    def add(self, key: str, version: int, vector: Vector) -> None:
        self._put([(key, version, quantize(vector))])

    def add_many(self, rows: Iterable[tuple[str, int, Vector]]) -> None:
        """Several (key, version, vector) at once: one bulk add to the graph."""
        self._put((key, version, quantize(vector)) for key, version, vector in rows)

    def propose(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Candidate]:
        """The `count` rows whose approximate similarity to `query` is highest, best first."""
        with self._lock:
            if count <= 0:
                return []
            if among is None and self._graph is not None:
                slots, scores = self._searched(query, count)
            else:
                slots = (
                    self._slots_among(among)
                    if among is not None
                    else np.fromiter(self._slots.values(), dtype=np.int64)
                )
                scores = (self._codes[slots].astype(np.float32) @ query) * self._scales[slots]
            return [Candidate(key, version, score) for key, version, score in self._top(slots, scores, count)]

    def _capacity(self) -> int:
        return len(self._codes)

    def _enlarge(self, rows: int) -> None:
        codes = np.zeros((rows, self.dimensions), dtype=np.int8)
        codes[: len(self._codes)] = self._codes
        scales = np.zeros(rows, dtype=np.float32)
        scales[: len(self._scales)] = self._scales
        self._codes, self._scales = codes, scales

    def _write(self, slot: int, row: Any) -> None:
        self._codes[slot], self._scales[slot] = row

    def _clear(self, slot: int) -> None:
        self._codes[slot] = 0
        self._scales[slot] = 0.0

    def _graph_rows(self, slots: NDArray[np.int64]) -> NDArray[Any]:
        """Codes as they are: cosine does not see a row's scale."""
        return self._codes[slots]
