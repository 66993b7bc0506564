"""Akosha's vector tiers: int8 warm rows and sealed Parquet cold segments proposing candidates
that float32 rescoring ranks as the all-hot index would; the aging policy; segments that
survive a restart, refuse to open when damaged and go once unused; and the tiers under the real
index on SQLite and PostgreSQL (stored vectors loaded instead of embedded again, reads keeping
records hot, tombstones reaching every tier, searches answering while vectors move)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from mahavishnu.akosha.cold_tier import ColdTier
from mahavishnu.akosha.cross_search import CrossSearch
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.reads import Reader
from mahavishnu.akosha.record_index import RecordIndex, Tiering
from mahavishnu.akosha.tiers import AgingPolicy
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.search.embeddings import HashingEmbedder, Vectors
from mahavishnu.platform.search.int8_vectors import Int8Vectors, dequantize, quantize
from mahavishnu.platform.search.vector_index import TenantVectors
from tests.akosha.records import parsed, tombstone, upsert

ADMIN = Principal(subject="admin", role="admin")
NOW = datetime.now(UTC)
DIMENSIONS = 64


def clustered(count: int, *, seed: int = 7, dimensions: int = DIMENSIONS) -> NDArray[np.float32]:
    """Unit vectors around 20 centres: the shape real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dimensions))
    points = centres[rng.integers(0, 20, count)] + 0.5 * rng.standard_normal((count, dimensions))
    unit: NDArray[np.float32] = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    return unit


def exact_top(vectors: NDArray[np.float32], query: NDArray[np.float32], count: int) -> list[int]:
    return [int(i) for i in np.argsort(-(vectors @ query), kind="stable")[:count]]


def test_int8_codes_keep_a_vector_to_within_its_scale() -> None:
    vector = clustered(1)[0]
    codes, scale = quantize(vector)
    assert codes.dtype == np.int8
    assert int(np.abs(codes).max()) == 127
    assert np.max(np.abs(dequantize(codes, scale) - vector)) <= scale / 2 + 1e-7
    zero, no_scale = quantize(np.zeros(4, dtype=np.float32))
    assert not zero.any()
    assert no_scale == 0.0


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["exact-scan", "hnsw-graph"])
def test_int8_rows_propose_what_an_exact_float_scan_ranks_first(threshold: int) -> None:
    vectors = clustered(2000)
    warm = Int8Vectors(DIMENSIONS, ann_threshold=threshold)
    for i, vector in enumerate(vectors):
        warm.add(f"k{i}", 1, vector)
    queries = clustered(50, seed=99)
    kept = 0
    for query in queries:
        proposed = {c.key for c in warm.propose(query, 40)}
        kept += len(proposed & {f"k{i}" for i in exact_top(vectors, query, 10)})
    assert kept / (10 * len(queries)) >= 0.95
    warm.remove("k0")
    assert "k0" not in {c.key for c in warm.propose(vectors[0], 5)}
    assert len(warm) == 1999
    assert warm.nbytes < vectors.nbytes


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_a_bulk_add_past_the_graph_threshold_keeps_the_last_of_each_key(kind: str) -> None:
    vectors = clustered(600)
    index: TenantVectors | Int8Vectors = (
        TenantVectors(DIMENSIONS, ann_threshold=100)
        if kind == "float32"
        else Int8Vectors(DIMENSIONS, ann_threshold=100)
    )
    index.add_many([(f"k{i}", 1, v) for i, v in enumerate(vectors[:300])])  # crosses the threshold
    assert index.approximate
    graph = index._graph
    index.add_many([])
    assert index._graph is graph, "an empty batch leaves the graph as it is"
    index.add_many([(f"k{i}", 2, v) for i, v in enumerate(vectors[300:])] + [("k0", 3, vectors[599])])
    assert len(index) == 300
    assert index.version_of("k0") == 3
    assert index.version_of("k299") == 2
    found = (
        index.nearest(vectors[599], 1) if isinstance(index, TenantVectors) else index.propose(vectors[599], 1)
    )
    assert [getattr(f, "memory_id", None) or getattr(f, "key", None) for f in found] in (["k0"], ["k299"])


def test_cold_segments_answer_as_an_exact_int8_scan_and_survive_a_restart(tmp_path: Path) -> None:
    ring = KeyRing.parse(generate_key())
    vectors = clustered(10_000)
    cold = ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS)
    cold.write([(f"k{i}", 1, v) for i, v in enumerate(vectors)])
    assert cold.segments >= 3
    assert len(cold) == 10_000
    files = list(tmp_path.glob("*.parquet.sealed"))
    assert len(files) == cold.segments
    assert all(b"PAR1" not in f.read_bytes() for f in files)  # sealed whole, not plain Parquet

    reference = Int8Vectors(DIMENSIONS, ann_threshold=10**9)
    for i, vector in enumerate(vectors):
        reference.add(f"k{i}", 1, vector)
    again = ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS)
    assert again.load() == {f"k{i}": 1 for i in range(10_000)}
    for query in clustered(20, seed=5):
        expected = [c.key for c in reference.propose(query, 10)]
        assert [c.key for c in cold.propose(query, 10)] == expected
        assert [c.key for c in again.propose(query, 10)] == expected
    only = {"k1", "k2", "k3"}
    assert {c.key for c in again.propose(vectors[1], 10, among=only)} == only


def test_a_damaged_or_foreign_segment_is_set_aside(tmp_path: Path) -> None:
    ring = KeyRing.parse(generate_key())
    cold = ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS)
    cold.write([(f"k{i}", 1, v) for i, v in enumerate(clustered(100))])
    (segment,) = tmp_path.glob("*.parquet.sealed")
    assert ColdTier(tmp_path, KeyRing.parse(generate_key()), model_id="m", dimensions=DIMENSIONS).load() == {}
    assert ColdTier(tmp_path, ring, model_id="other-model", dimensions=DIMENSIONS).load() == {}
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    damaged = ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS)
    assert damaged.load() == {}
    assert damaged.propose(clustered(1)[0], 10) == []


def test_stale_entries_are_compacted_away_and_unused_segments_deleted(tmp_path: Path) -> None:
    ring = KeyRing.parse(generate_key())
    vectors = clustered(10)
    cold = ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS)
    cold.write([(f"k{i}", 1, v) for i, v in enumerate(vectors)])
    (first,) = tmp_path.glob("*.parquet.sealed")
    cold.forget(["k3"])  # deleted, say: its codes must leave the disk
    assert "k3" not in {c.key for c in cold.propose(vectors[3], 10)}
    assert cold.compact() == 1
    (rewritten,) = tmp_path.glob("*.parquet.sealed")
    assert rewritten != first
    assert ColdTier(tmp_path, ring, model_id="m", dimensions=DIMENSIONS).load() == {
        f"k{i}": 1 for i in range(10) if i != 3
    }
    cold.write([("k0", 2, vectors[0])])  # a newer version lands in a new segment
    assert cold.version_of("k0") == 2
    assert cold.segments == 2
    assert [c.version for c in cold.propose(vectors[0], 1)] == [2]
    cold.forget([f"k{i}" for i in range(1, 10)])
    assert cold.segments == 1
    assert len(list(tmp_path.glob("*.parquet.sealed"))) == 1
    cold.forget(["k0"])
    assert cold.segments == 0
    assert not list(tmp_path.glob("*.parquet.sealed"))


@pytest.mark.parametrize(
    ("written_days_ago", "read_days_ago", "tier"),
    [
        (0, None, "hot"),
        (29, None, "hot"),
        (31, None, "warm"),
        (179, None, "warm"),
        (181, None, "cold"),
        (400, 2, "hot"),
        (400, 100, "warm"),
    ],
)
def test_the_policy_places_by_the_later_of_writing_and_reading(
    written_days_ago: int, read_days_ago: int | None, tier: str
) -> None:
    policy = AgingPolicy(hot_days=30, warm_days=180)
    read = None if read_days_ago is None else NOW - timedelta(days=read_days_ago)
    assert policy.tier_for(NOW - timedelta(days=written_days_ago), read, NOW) == tier


class CountingEmbedder(HashingEmbedder):
    """The test embedder, counting the texts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__(DIMENSIONS)
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.embedded += len(texts)
        return super().embed(texts)


def _words(i: int) -> str:
    """A text sharing words with its neighbours: ranks by meaning are not all ties."""
    return " ".join(f"w{(i * 3 + j) % 997}" for j in range(6)) + f" item{i}"


def _aged_records(count: int) -> list[dict[str, object]]:
    """Records written from today back to 300 days ago: every tier gets some."""
    return [
        upsert(f"m{i}", 1, content=_words(i), created_at=(NOW - timedelta(days=i * 300 // count)).isoformat())
        for i in range(count)
    ]


async def _index(db: Database, ring: KeyRing, tiering: Tiering, embedder: HashingEmbedder) -> RecordIndex:
    index = RecordIndex(db, ring, tiering)
    await index.rebuild()
    index.use_embedder(embedder)
    while await index.embed_pending():
        pass
    return index


async def _ingest(db: Database, ring: KeyRing, index: RecordIndex, records: list[dict[str, object]]) -> None:
    inbox = Inbox(db, ring, IngestMetrics(Metrics(prefix="t")), max_records=1000, on_stored=index.note)
    await inbox.take("box", parsed(*records))


async def test_records_age_into_tiers_and_rank_as_all_hot(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    all_hot = RecordIndex(
        ak_database, ring, Tiering(tiering.cold_folder.parent / "never", AgingPolicy(1e6, 2e6))
    )
    await all_hot.rebuild()
    await _ingest(ak_database, ring, all_hot, _aged_records(300))
    embedder = CountingEmbedder()
    all_hot.use_embedder(embedder)
    while await all_hot.embed_pending():
        pass
    assert embedder.embedded == 300
    assert all_hot.tier_sizes() == {"hot": 300, "warm": 0, "cold": 0}

    tiered = await _index(ak_database, ring, tiering, embedder)
    assert embedder.embedded == 300, "a restart loads stored vectors, it does not embed again"
    sizes = tiered.tier_sizes()
    assert sizes["hot"] == 30
    assert sizes["cold"] == 120
    assert sum(sizes.values()) == 300
    assert list(tiering.cold_folder.glob("*.parquet.sealed"))

    for i in range(0, 300, 10):
        query = embedder.embed([_words(i)])[0]
        everything_hot = await all_hot.vectors.nearest(query, 10)  # type: ignore[union-attr]
        across_tiers = await tiered.vectors.nearest(query, 10)  # type: ignore[union-attr]
        assert across_tiers[0].memory_id == f"box/m{i}"
        # As good as all-hot: the same similarities, rank by rank (ties may swap equal records).
        assert [round(n.similarity, 5) for n in across_tiers] == [
            round(n.similarity, 5) for n in everything_hot
        ]


async def _aged_index(db: Database, ring: KeyRing, tiering: Tiering) -> RecordIndex:
    """An index of 300 records written over 300 days, embedded and aged into the three tiers."""
    index = RecordIndex(db, ring, tiering)
    await index.rebuild()
    await _ingest(db, ring, index, _aged_records(300))
    index.use_embedder(HashingEmbedder(DIMENSIONS))
    while await index.embed_pending():
        pass
    await index.age()
    return index


async def test_a_read_brings_a_cold_record_back_and_a_tombstone_reaches_every_tier(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    index = await _aged_index(ak_database, ring, tiering)
    vectors = index.vectors
    assert vectors is not None
    cold_key = "box/m290"
    assert vectors.tier_of(cold_key) == "cold"

    search = CrossSearch(ak_database, ring, index)
    page = await search.search(ADMIN, _words(290), mode="semantic", limit=1)
    assert [h.memory_id for h in page.hits] == ["m290"]
    assert await index.age() == {"hot": 1, "warm": 0, "cold": 0}
    assert vectors.tier_of(cold_key) == "hot"

    restarted = await _index(ak_database, ring, tiering, HashingEmbedder(DIMENSIONS))
    assert restarted.vectors is not None
    assert restarted.vectors.tier_of(cold_key) == "hot", "the read was kept"

    await _ingest(ak_database, ring, restarted, [tombstone("m291", 2), tombstone("m150", 2)])
    assert restarted.vectors.tier_of("box/m291") is None
    assert restarted.vectors.tier_of("box/m150") is None
    found = await search_keys(CrossSearch(ak_database, ring, restarted), _words(291))
    assert "m291" not in found
    assert await restarted.vectors.store.vectors(["box/m291", "box/m150"]) == {}, "purged from the store"
    await restarted.age()  # rewrites the segment m291 was in without it
    segments = ColdTier(
        tiering.cold_folder, ring, model_id=HashingEmbedder(DIMENSIONS).model_id, dimensions=DIMENSIONS
    )
    held = segments.load()
    assert "box/m291" not in held
    assert set(held) == set(restarted.vectors.cold.keys())
    assert len(held) > 100


async def test_a_record_read_by_id_comes_back_hot_and_a_listing_does_not_count(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    index = await _aged_index(ak_database, ring, tiering)
    assert index.vectors is not None
    assert index.vectors.tier_of("box/m290") == index.vectors.tier_of("box/m291") == "cold"

    reader = Reader(ak_database, ring, on_read=index.seen)
    view = await reader.record(ADMIN, "box", "m290")
    assert view.document is not None
    assert view.document.content == _words(290)
    listed = await reader.records(
        ADMIN, source="box", tenant=None, include_tombstoned=False, limit=200, cursor=None
    )
    later = await reader.records(
        ADMIN, source="box", tenant=None, include_tombstoned=False, limit=200, cursor=listed.next_cursor
    )
    assert "m291" in {r.memory_id for r in [*listed.records, *later.records]}
    assert await index.age() == {"hot": 1, "warm": 0, "cold": 0}
    assert index.vectors.tier_of("box/m290") == "hot"
    assert index.vectors.tier_of("box/m291") == "cold", "a listing is browsing, not reading"


async def search_keys(search: CrossSearch, query: str) -> list[str]:
    page = await search.search(ADMIN, query, mode="semantic", limit=20)
    return [h.memory_id for h in page.hits]


async def test_searches_keep_finding_records_while_they_move(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    index = RecordIndex(ak_database, ring, tiering)
    await index.rebuild()
    await _ingest(ak_database, ring, index, _aged_records(200))
    index.use_embedder(HashingEmbedder(DIMENSIONS))
    while await index.embed_pending():
        pass
    search = CrossSearch(ak_database, ring, index)
    targets = [5, 77, 150, 199]
    moving = True
    searches = 0

    async def move() -> None:
        """Everything cold (a year on), then everything hot again (a year back), three times."""
        nonlocal moving
        for round_ in range(6):
            moved = await index.age(
                NOW + timedelta(days=400) if round_ % 2 == 0 else NOW - timedelta(days=400)
            )
            assert sum(moved.values()) > 0
            await asyncio.sleep(0)
        moving = False

    async def look() -> None:
        nonlocal searches
        while moving:
            for i in targets:
                found = await search_keys(search, _words(i))
                assert found[0] == f"m{i}", (i, found[:3], index.tier_sizes())
                searches += 1

    await asyncio.gather(move(), look())
    assert searches >= len(targets)
