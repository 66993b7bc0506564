"""Rows of a matrix addressed by a key, what every in-memory vector index here is made of.

A key gets a slot (a row), reused after its key is removed; past `ann_threshold` keys a usearch
HNSW graph over the rows answers unfiltered searches, kept up to date on every add and remove.
Subclasses say what a row holds (float32, int8 codes and a scale) and how the graph compares
rows; this class keeps the slots, the versions, the graph and the lock, so the indexes differ
only in what they store.

Graph inserts are slow (about 0.4 ms a row on two cores), so nothing holds the lock for many of
them: the first graph is built from a copy of the rows with the lock released (searches scan
exactly meanwhile; what changed during the build is replayed into it), and a coroutine adds in
chunks, each in a thread (`add_many_off_loop`), so a bulk add never stalls an event loop.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from usearch.index import Index

__all__ = ["ANN_THRESHOLD", "SlottedRows"]

ANN_THRESHOLD = 20_000
"""Rows past which an HNSW graph answers instead of an exact scan (an exact scan of 20k x 384
float32 takes about 3 ms on two cores; see bench/memory_speed.py)."""
INITIAL_ROWS = 64
ADD_CHUNK = 256
"""Rows per graph insert from `add_many_off_loop`: about 0.1 s of the lock each on two cores."""


class SlottedRows(ABC):
    graph_metric = "ip"
    graph_dtype = "f32"

    def __init__(self, dimensions: int, *, ann_threshold: int = ANN_THRESHOLD) -> None:
        self.dimensions = dimensions
        self._threshold = ann_threshold
        self._keys: list[str | None] = []
        self._versions: list[int] = []
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._graph: Index | None = None
        self._building: set[int] | None = None
        """While the first graph is built outside the lock: the slots written or given up
        meanwhile, replayed into it before it answers."""
        self._lock = threading.Lock()  # searches run in threads while others add

    @abstractmethod
    def add_many(self, rows: Iterable[tuple[str, int, Any]]) -> None:
        """Several (key, version, vector) at once: one bulk add to the graph."""

    async def add_many_off_loop(self, rows: Sequence[tuple[str, int, Any]]) -> None:
        """`add_many` from a coroutine: chunks of `ADD_CHUNK`, each in a thread, so the event
        loop goes on answering (health, searches) while thousands of rows go in."""
        for start in range(0, len(rows), ADD_CHUNK):
            await asyncio.to_thread(self.add_many, rows[start : start + ADD_CHUNK])

    # What a subclass stores per row.

    @abstractmethod
    def _capacity(self) -> int:
        """Rows there is room for."""

    @abstractmethod
    def _enlarge(self, rows: int) -> None:
        """Make room for `rows` rows, keeping the ones held."""

    @abstractmethod
    def _write(self, slot: int, row: Any) -> None:
        """Keep `row` (as `_put` was given it) in `slot`."""

    @abstractmethod
    def _clear(self, slot: int) -> None:
        """Zero a slot given up."""

    @abstractmethod
    def _graph_rows(self, slots: NDArray[np.int64]) -> NDArray[Any]:
        """The rows as the graph takes them."""

    # The slots.

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    @property
    def approximate(self) -> bool:
        return self._graph is not None

    def version_of(self, key: str) -> int | None:
        slot = self._slots.get(key)
        return None if slot is None else self._versions[slot]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def _put(self, rows: Iterable[tuple[str, int, Any]]) -> None:
        """Keep each (key, version, row), replacing what a key held; the graph takes them in
        one bulk add (usearch spreads it over threads: several times faster than one by one)."""
        latest = {key: (version, row) for key, version, row in rows}
        with self._lock:
            written = []
            for key, (version, row) in latest.items():
                slot = self._slots.get(key)
                if slot is None:
                    slot = self._free.pop() if self._free else self._grow()
                    self._slots[key] = slot
                    self._keys[slot] = key
                elif self._graph is not None:
                    self._graph.remove(slot)
                self._versions[slot] = version
                self._write(slot, row)
                written.append(slot)
            if self._building is not None:
                self._building.update(written)
                return
            if self._graph is not None:
                if written:
                    slots = np.array(written, dtype=np.int64)
                    self._graph.add(slots, self._graph_rows(slots))
                return
            if len(self._slots) < self._threshold:
                return
            self._building = set()
            slots = np.fromiter(self._slots.values(), dtype=np.int64)
            rows_now = self._graph_rows(slots)  # a copy: the rows may change while the graph is built
        self._build_graph(slots, rows_now)

    def remove(self, key: str) -> None:
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                return
            self._keys[slot] = None
            self._clear(slot)
            self._free.append(slot)
            if self._building is not None:
                self._building.add(slot)
            if self._graph is not None:
                self._graph.remove(slot)

    def _slots_among(self, among: Iterable[str]) -> NDArray[np.int64]:
        """The slots of the keys of `among` held here (call with the lock held)."""
        return np.fromiter((s for k in among if (s := self._slots.get(k)) is not None), dtype=np.int64)

    def _searched(self, query: NDArray[Any], count: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The graph's `count` nearest slots and their similarities (lock held, graph built)."""
        assert self._graph is not None
        found = self._graph.search(query, count)
        slots = np.asarray(found.keys, dtype=np.int64)
        return slots, (1.0 - np.asarray(found.distances, dtype=np.float32)).astype(np.float32)

    def _top(
        self, slots: NDArray[np.int64], scores: NDArray[np.float32], count: int
    ) -> list[tuple[str, int, float]]:
        """(key, version, score) of the `count` best-scored slots, best first (lock held)."""
        if len(slots) > count:
            top = np.argpartition(-scores, count - 1)[:count]
            slots, scores = slots[top], scores[top]
        found = []
        for position in np.argsort(-scores, kind="stable"):
            slot = int(slots[position])
            key = self._keys[slot] if 0 <= slot < len(self._keys) else None
            if key is not None and np.isfinite(scores[position]):
                found.append((key, self._versions[slot], float(scores[position])))
        return found

    def _grow(self) -> int:
        slot = len(self._keys)
        if slot == self._capacity():
            self._enlarge(max(INITIAL_ROWS, 2 * self._capacity()))
        self._keys.append(None)
        self._versions.append(0)
        return slot

    def _build_graph(self, slots: NDArray[np.int64], rows: NDArray[Any]) -> None:
        """Build the graph from `rows` without the lock, then replay what changed meanwhile."""
        try:
            graph = Index(
                ndim=self.dimensions,
                metric=self.graph_metric,
                dtype=self.graph_dtype,
                connectivity=16,
                expansion_search=128,
            )
            graph.add(slots, rows)
        except BaseException:
            with self._lock:
                self._building = None  # the next add tries again
            raise
        with self._lock:
            changed, self._building = np.array(sorted(self._building or ()), dtype=np.int64), None
            if len(changed):
                graph.remove(changed)
                live = np.array([s for s in changed if self._keys[s] is not None], dtype=np.int64)
                if len(live):
                    graph.add(live, self._graph_rows(live))
            self._graph = graph
