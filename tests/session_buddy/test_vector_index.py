"""The in-process vector index: exact scan and the HNSW graph past the threshold answer the
same nearest vectors, removals are never answered, tenants are kept apart, and slow graph
inserts never hold the lock (first build) or the event loop (bulk adds from a coroutine)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from usearch.index import Index

from mahavishnu.platform.search import slotted_rows
from mahavishnu.platform.search.slotted_rows import ADD_CHUNK
from mahavishnu.platform.search.vector_index import Neighbour, TenantVectors, VectorIndex


def _unit(rng: np.random.Generator, count: int, dimensions: int = 32) -> np.ndarray:
    vectors = rng.standard_normal((count, dimensions)).astype(np.float32)
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def test_the_graph_past_the_threshold_answers_like_the_exact_scan() -> None:
    rng = np.random.default_rng(12)
    vectors = _unit(rng, 300)
    exact, graph = VectorIndex("m", 32, ann_threshold=10_000), VectorIndex("m", 32, ann_threshold=100)
    for number, vector in enumerate(vectors):
        for index in (exact, graph):
            index.tenant("acme").add(f"m{number}", 1, vector)
    assert graph.tenant("acme").approximate
    assert not exact.tenant("acme").approximate
    for number in (0, 77, 299):
        for index in (exact, graph):
            nearest = index.tenant("acme").nearest(vectors[number], 5)
            assert nearest[0].memory_id == f"m{number}"
            assert abs(nearest[0].similarity - 1.0) < 1e-4
    for index in (exact, graph):
        index.tenant("acme").remove("m77")
        assert "m77" not in [n.memory_id for n in index.tenant("acme").nearest(vectors[77], 20)]
        index.tenant("acme").add("m77", 2, vectors[77])  # re-added at a new version, in a free slot
        assert index.tenant("acme").nearest(vectors[77], 1)[0].version == 2


def test_tenants_are_scanned_apart() -> None:
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 4)
    index = VectorIndex("m", 32)
    index.tenant("acme").add("a", 1, vectors[0])
    index.tenant("globex").add("g", 1, vectors[1])
    assert [n.memory_id for n in index.tenant("acme").nearest(vectors[1], 10)] == ["a"]
    assert index.tenant("acme").similarity(["g", "a"], vectors[0]).keys() == {"a"}
    assert [n.memory_id for n in index.tenant("acme").nearest(vectors[1], 10, among=["g", "a"])] == ["a"]
    assert index.size() == 2


def test_searches_and_changes_go_on_while_the_first_graph_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build of the first graph (seconds at the real threshold) runs without the lock: an
    exact scan answers meanwhile, and what changed during the build reaches the graph. The
    graph's insert is held open (a real usearch index behind a gate) while the changes are made."""
    inserting, finish = threading.Event(), threading.Event()

    class GatedIndex(Index):  # type: ignore[misc]  # usearch ships no type hints
        def add(self, keys: Any, vectors: Any, **options: Any) -> Any:
            if len(keys) >= 200:  # the build's insert, not the replay's
                inserting.set()
                finish.wait(30)
            return super().add(keys, vectors, **options)

    monkeypatch.setattr(slotted_rows, "Index", GatedIndex)
    vectors = _unit(np.random.default_rng(3), 300)
    index = TenantVectors(32, ann_threshold=200)
    index.add_many([(f"m{i}", 1, v) for i, v in enumerate(vectors[:199])])
    crossing = threading.Thread(target=index.add, args=("m199", 1, vectors[199]))
    crossing.start()
    assert inserting.wait(30), "the build has begun"
    nearest: list[Neighbour] = []

    def meanwhile() -> None:
        nearest.extend(index.nearest(vectors[10], 1))
        index.remove("m10")
        index.add("late", 1, vectors[250])

    changes = threading.Thread(target=meanwhile)
    changes.start()
    changes.join(10)
    done_during_the_build = not changes.is_alive()
    finish.set()
    changes.join()
    crossing.join()

    assert done_during_the_build, "the search and the changes did not wait for the build"
    assert [n.memory_id for n in nearest] == ["m10"]
    assert index.approximate
    assert "m10" not in [n.memory_id for n in index.nearest(vectors[10], 20)]
    assert index.nearest(vectors[250], 1)[0].memory_id == "late"
    assert len(index) == 200


async def test_a_bulk_add_from_a_coroutine_leaves_the_event_loop_free() -> None:
    vectors = _unit(np.random.default_rng(4), 3 * ADD_CHUNK)
    index = TenantVectors(32, ann_threshold=100)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await index.add_many_off_loop([(f"m{i}", 1, v) for i, v in enumerate(vectors)])
    worker.cancel()
    assert turns - before >= 3, "the loop ran other work while each chunk went in"
    assert len(index) == 3 * ADD_CHUNK
    assert index.approximate
    assert index.nearest(vectors[700], 1)[0].memory_id == "m700"
