"""The cold tier: vectors of records nobody has looked at for a long time, out of memory, in
Parquet segment files (`pyarrow`), each sealed whole under the store's key ring.

A segment holds one cluster of vectors as int8 codes with their scales (`int8_vectors.quantize`),
next to each record's key and version. The files describe themselves: at start every segment is
read once to learn what it holds, its centroid and its radius (the least cosine of a member to
the centroid); nothing else needs to agree with them. A search scans segments in the order of
the best similarity each could hold (the query's angle to the centroid less the radius) and
stops once no unscanned segment can beat what it has, so it reads only the clusters near the
query, and answers what an exact scan of the int8 codes would. Decrypted segments stay in a
small cache bounded by bytes.

A record that leaves the cold tier (read again, updated, deleted) is forgotten in memory at
once; `compact` (each aging run) then rewrites every segment holding such stale entries without
them, so a deleted memory's codes leave the disk too, and a segment none of whose entries is
current is deleted.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # no type hints shipped
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from numpy.typing import NDArray

from mahavishnu.platform import get_logger
from mahavishnu.platform.crypto import DecryptionError, KeyRing, associated_data
from mahavishnu.platform.search.int8_vectors import Candidate, quantize

__all__ = ["SEGMENT_ROWS", "ColdTier", "audit_segments"]

log = get_logger("akosha.cold")

Vector = NDArray[np.float32]

SEGMENT_ROWS = 4096
"""Vectors per segment, about: 1.6 MB of codes at 384 dimensions."""
_SUFFIX = ".parquet.sealed"
_MARGIN = 0.02
"""How far an int8 score may stray from the float32 one: a segment whose bound is within it
of the best found so far is still scanned."""
_KMEANS_ROUNDS = 4
_UNREADABLE = (OSError, DecryptionError, pa.ArrowException, ValueError)
"""What a damaged, foreign or missing segment file raises."""


@dataclass(frozen=True, slots=True)
class _Segment:
    keys: list[str]
    versions: NDArray[np.int64]
    codes: NDArray[np.int8]
    scales: NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scales.nbytes + self.versions.nbytes) + 64 * len(self.keys)


@dataclass(frozen=True, slots=True)
class _Summary:
    centroid: Vector
    radius: float
    """The widest angle (radians) of a member from the centroid."""


class ColdTier:
    def __init__(
        self, folder: Path, ring: KeyRing, *, model_id: str, dimensions: int, cache_bytes: int = 64 << 20
    ) -> None:
        self._folder = folder
        self._ring = ring
        self._model = model_id
        self.dimensions = dimensions
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[str, _Segment] = OrderedDict()
        self._summaries: dict[str, _Summary] = {}
        self._where: dict[str, tuple[str, int]] = {}
        self._live: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    @property
    def segments(self) -> int:
        return len(self._summaries)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._where)

    def version_of(self, key: str) -> int | None:
        held = self._where.get(key)
        return None if held is None else held[1]

    def load(self) -> dict[str, int]:
        """Learn what the segment files hold (at start); answers key -> version. A segment that
        does not open (damaged, another key ring, another model) is set aside, not trusted."""
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(self._folder.glob(f"*{_SUFFIX}"), key=lambda p: p.stat().st_mtime_ns):
            name = path.name.removesuffix(_SUFFIX)
            try:
                segment = self._read(name)
            except _UNREADABLE as exc:
                log.error("cold_segment_unreadable", segment=name, error=f"{type(exc).__name__}: {exc}")
                continue
            self._adopt(name, segment)
        self._drop_unused()
        return {key: version for key, (_, version) in self._where.items()}

    def write(self, rows: Sequence[tuple[str, int, Vector]]) -> None:
        """Move these vectors into new segments, one per cluster (files first, then memory)."""
        if not rows:
            return
        vectors = np.stack([vector for _, _, vector in rows]).astype(np.float32)
        for members in _clusters(vectors, math.ceil(len(rows) / SEGMENT_ROWS)):
            coded = [quantize(vectors[i]) for i in members]
            segment = _Segment(
                keys=[rows[i][0] for i in members],
                versions=np.array([rows[i][1] for i in members], dtype=np.int64),
                codes=np.stack([codes for codes, _ in coded]),
                scales=np.array([scale for _, scale in coded], dtype=np.float32),
            )
            name = uuid.uuid4().hex
            self._store(name, segment)
            self._adopt(name, segment)
        self._drop_unused()

    def forget(self, keys: Iterable[str]) -> None:
        """These records are no longer cold (their segments keep stale entries until unused)."""
        with self._lock:
            for key in keys:
                held = self._where.pop(key, None)
                if held is not None:
                    self._live[held[0]] -= 1
        self._drop_unused()

    def compact(self) -> int:
        """Rewrite each segment holding entries that are no longer current without them;
        answers how many segments were rewritten."""
        with self._lock:
            stale = [name for name, live in self._live.items() if 0 < live < self._total[name]]
        for name in stale:
            segment = self._segment(name)
            if segment is None:
                continue
            keep = [
                i
                for i, (key, version) in enumerate(zip(segment.keys, segment.versions, strict=True))
                if self._where.get(key) == (name, int(version))
            ]
            if keep:
                kept = _Segment(
                    keys=[segment.keys[i] for i in keep],
                    versions=segment.versions[keep],
                    codes=segment.codes[keep],
                    scales=segment.scales[keep],
                )
                fresh = uuid.uuid4().hex
                self._store(fresh, kept)
                self._adopt(fresh, kept)
        self._drop_unused()
        return len(stale)

    def propose(self, query: Vector, count: int, among: Iterable[str] | None = None) -> list[Candidate]:
        """The `count` cold records whose int8 similarity to `query` is highest, best first."""
        wanted = None if among is None else {k for k in among if k in self._where}
        if count <= 0 or not self._where or wanted == set():
            return []
        with self._lock:
            bounds = sorted(
                ((self._bound(summary, query), name) for name, summary in self._summaries.items()),
                reverse=True,
            )
        best: list[Candidate] = []
        for bound, name in bounds:
            if len(best) >= count and bound + _MARGIN < best[-1].approximate:
                break
            found = self._scan(name, query, wanted, count)
            best = sorted([*best, *found], key=lambda c: -c.approximate)[:count]
        return best

    def _scan(self, name: str, query: Vector, wanted: set[str] | None, count: int) -> list[Candidate]:
        """The segment's `count` best current entries (of `wanted`, when given)."""
        segment = self._segment(name)
        if segment is None:
            return []
        scores = (segment.codes.astype(np.float32) @ query) * segment.scales
        found: list[Candidate] = []
        for position in np.argsort(-scores, kind="stable"):
            key = segment.keys[position]
            version = int(segment.versions[position])
            if self._where.get(key) == (name, version) and (wanted is None or key in wanted):
                found.append(Candidate(key, version, float(scores[position])))
                if len(found) == count:
                    break
        return found

    @staticmethod
    def _bound(summary: _Summary, query: Vector) -> float:
        angle = math.acos(max(-1.0, min(1.0, float(summary.centroid @ query))))
        return math.cos(max(0.0, angle - summary.radius))

    def _adopt(self, name: str, segment: _Segment) -> None:
        vectors = segment.codes.astype(np.float32) * segment.scales[:, None]
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        unit = vectors / norms[:, None]
        centroid = unit.mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        radius = float(np.arccos(np.clip((unit @ centroid).min(), -1.0, 1.0)))
        with self._lock:
            live = 0
            for key, version in zip(segment.keys, segment.versions, strict=True):
                held = self._where.get(key)
                if held is None or held[1] <= version:
                    if held is not None:
                        self._live[held[0]] -= 1
                    self._where[key] = (name, int(version))
                    live += 1
            self._live[name] = live
            self._total[name] = len(segment.keys)
            self._summaries[name] = _Summary(centroid.astype(np.float32), radius + 0.01)
            self._remember(name, segment)

    def _drop_unused(self) -> None:
        with self._lock:
            unused = [name for name, live in self._live.items() if live <= 0]
            for name in unused:
                del self._live[name]
                del self._total[name]
                del self._summaries[name]
                self._cache.pop(name, None)
        for name in unused:
            (self._folder / f"{name}{_SUFFIX}").unlink(missing_ok=True)

    def _segment(self, name: str) -> _Segment | None:
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None:
                self._cache.move_to_end(name)
                return cached
        try:
            segment = self._read(name)
        except _UNREADABLE as exc:
            log.error("cold_segment_unreadable", segment=name, error=f"{type(exc).__name__}: {exc}")
            return None
        with self._lock:
            self._remember(name, segment)
        return segment

    def _remember(self, name: str, segment: _Segment) -> None:
        self._cache[name] = segment
        self._cache.move_to_end(name)
        while len(self._cache) > 1 and sum(s.nbytes for s in self._cache.values()) > self._cache_bytes:
            self._cache.popitem(last=False)

    def _store(self, name: str, segment: _Segment) -> None:
        table = pa.table(
            {
                "key": pa.array(segment.keys, pa.string()),
                "version": pa.array(segment.versions, pa.int64()),
                "scale": pa.array(segment.scales, pa.float32()),
                "codes": pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(self.dimensions),
                    len(segment.keys),
                    [None, pa.py_buffer(segment.codes.tobytes())],
                ),
            }
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        sealed = self._ring.encrypt(sink.getvalue().to_pybytes(), associated=_binding(name, self._model))
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._folder / f"{name}{_SUFFIX}"
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("wb") as file:
            file.write(sealed)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    def _read(self, name: str) -> _Segment:
        return _read_segment(self._folder, self._ring, self._model, name)


def _clusters(vectors: Vector, k: int) -> list[NDArray[np.int64]]:
    """Row indices grouped by a few rounds of spherical k-means (seeded: the same rows give the
    same segments)."""
    if k <= 1:
        return [np.arange(len(vectors))]
    rng = np.random.default_rng(len(vectors))
    centroids = vectors[rng.choice(len(vectors), size=k, replace=False)]
    assigned = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(_KMEANS_ROUNDS):
        assigned = np.argmax(vectors @ centroids.T, axis=1)
        for c in range(k):
            members = vectors[assigned == c]
            if len(members):
                mean = members.mean(axis=0)
                centroids[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return [found for c in range(k) if len(found := np.flatnonzero(assigned == c))]


def _binding(name: str, model_id: str) -> bytes:
    return associated_data("akosha", "cold-segment", name, model_id)


def _read_segment(folder: Path, ring: KeyRing, model_id: str, name: str) -> _Segment:
    sealed = (folder / f"{name}{_SUFFIX}").read_bytes()
    table = pq.read_table(pa.BufferReader(ring.decrypt(sealed, associated=_binding(name, model_id))))
    codes = table.column("codes").combine_chunks()
    size, width = len(codes), codes.type.byte_width
    raw = np.frombuffer(codes.buffers()[1], dtype=np.int8)
    start = codes.offset * width
    return _Segment(
        keys=[str(k) for k in table.column("key").to_pylist()],
        versions=np.asarray(table.column("version").to_numpy(), dtype=np.int64),
        codes=raw[start : start + size * width].reshape(size, width).copy(),
        scales=np.asarray(table.column("scale").to_numpy(), dtype=np.float32),
    )


def audit_segments(folder: Path, ring: KeyRing, model_id: str) -> tuple[int, int]:
    """(segment files in `folder`, those that do not open under `ring` for `model_id`)."""
    names = [p.name.removesuffix(_SUFFIX) for p in folder.glob(f"*{_SUFFIX}")]
    unreadable = 0
    for name in names:
        try:
            _read_segment(folder, ring, model_id, name)
        except _UNREADABLE:
            unreadable += 1
    return len(names), unreadable
