"""The in-process vector index: exact scan and the HNSW graph past the threshold answer the
same nearest vectors, removals are never answered, and tenants are kept apart."""

from __future__ import annotations

import numpy as np

from mahavishnu.platform.search.vector_index import VectorIndex


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
