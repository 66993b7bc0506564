"""`search_all_systems` on SQLite and PostgreSQL, with the deterministic test embedder: one
ranking across sources, each hit naming its source, session and time; only the sources a
token's tags name; filters, pages, tombstones, other processes' ingests, and bad arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mahavishnu.akosha.cross_search import CrossSearch, CrossSearchPage
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.record_index import RecordIndex, Tiering
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, UnavailableError
from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.search.embeddings import HashingEmbedder
from tests.akosha.records import parsed, tombstone, upsert

ADMIN = Principal(subject="admin", role="admin")
LAPTOP_ONLY = Principal(subject="ann", role="viewer", tags=frozenset({"laptop"}))

RECORDS: dict[str, list[dict[str, Any]]] = {
    "laptop": [
        upsert(
            "l1", 1, source="laptop", content="flaky webhook retries exhausted the queue", session_id="s-1"
        ),
        upsert(
            "l2", 1, source="laptop", content="pinned redis to 7.2 after the eviction bug", project="cache"
        ),
        upsert("l3", 1, source="laptop", content="E4012 raised by tests/unit/test_auth.py::test_expiry"),
    ],
    "ci": [
        upsert("c1", 1, source="ci", content="webhook signature check fails on retries", project="cache"),
        upsert(
            "c2",
            1,
            source="ci",
            content="nightly deploy window moved to 02:00 UTC",
            created_at="2026-03-01T00:00:00+00:00",
        ),
    ],
}


async def prepared(
    db: Database, ring: KeyRing, tiering: Tiering, *, embed: bool = True
) -> tuple[RecordIndex, CrossSearch]:
    index = RecordIndex(db, ring, tiering)
    await index.rebuild()
    if embed:
        index.use_embedder(HashingEmbedder(256))
    inbox = Inbox(db, ring, IngestMetrics(Metrics(prefix="akosha")), max_records=100, on_stored=index.note)
    for source, records in RECORDS.items():
        await inbox.take(source, parsed(*records, source=source))
    while await index.embed_pending():
        pass
    return index, CrossSearch(db, ring, index)


def found(page: CrossSearchPage) -> list[tuple[str, str]]:
    return [(h.source, h.memory_id) for h in page.hits]


async def test_one_ranking_across_sources_names_each_hit(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    _, search = await prepared(ak_database, ring, tiering)
    for mode in ("keyword", "semantic", "hybrid"):
        page = await search.search(ADMIN, "webhook retries", mode=mode, limit=2)
        assert set(found(page)) == {("laptop", "l1"), ("ci", "c1")}, mode
    first = (await search.search(ADMIN, "webhook retries", mode="keyword", limit=1)).hits[0]
    assert (first.source, first.session_id) == ("laptop", "s-1")
    assert first.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert "webhook" in first.content
    identifier = await search.search(ADMIN, "E4012", mode="hybrid")
    assert found(identifier)[0] == ("laptop", "l3")
    path = await search.search(ADMIN, "test_auth.py", mode="keyword")
    assert found(path) == [("laptop", "l3")]


async def test_a_token_finds_only_the_sources_its_tags_name(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    _, search = await prepared(ak_database, ring, tiering)
    for mode in ("keyword", "semantic", "hybrid"):
        page = await search.search(LAPTOP_ONLY, "webhook retries deploy", mode=mode, limit=50)
        assert {s for s, _ in found(page)} == {"laptop"}, mode
        assert page.total <= 3
    asked_for_other = await search.search(LAPTOP_ONLY, "webhook", sources=["ci"], mode="keyword")
    assert (asked_for_other.hits, asked_for_other.total) == ([], 0)


async def test_filters_pages_and_tombstones(ak_database: Database, ring: KeyRing, tiering: Tiering) -> None:
    index, search = await prepared(ak_database, ring, tiering)
    by_project = await search.search(ADMIN, "webhook redis", projects=["cache"], mode="keyword")
    assert set(found(by_project)) == {("laptop", "l2"), ("ci", "c1")}
    march = datetime(2026, 3, 1, tzinfo=UTC)
    assert found(await search.search(ADMIN, "deploy webhook", since=march, mode="keyword")) == [("ci", "c2")]
    assert ("ci", "c2") not in found(
        await search.search(ADMIN, "deploy webhook", until=march, mode="keyword")
    )

    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = await search.search(ADMIN, "webhook redis deploy the", mode="hybrid", limit=2, cursor=cursor)
        seen += found(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == page.total

    inbox = Inbox(ak_database, ring, IngestMetrics(Metrics(prefix="t")), max_records=10, on_stored=index.note)
    await inbox.take("ci", parsed(tombstone("c1", 2, source="ci"), source="ci"))
    assert ("ci", "c1") not in found(await search.search(ADMIN, "webhook", mode="hybrid"))


async def test_another_process_ingest_is_followed(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    index, search = await prepared(ak_database, ring, tiering, embed=False)
    since = datetime.now(UTC)
    elsewhere = Inbox(ak_database, ring, IngestMetrics(Metrics(prefix="t")), max_records=10)
    await elsewhere.take(
        "desk", parsed(upsert("d1", 1, source="desk", content="quokka sightings"), source="desk")
    )
    assert (await search.search(ADMIN, "quokka", mode="keyword")).hits == []
    await index.follow(since)
    assert found(await search.search(ADMIN, "quokka", mode="hybrid")) == [("desk", "d1")]  # keyword only
    with pytest.raises(UnavailableError, match="meaning"):
        await search.search(ADMIN, "quokka", mode="semantic")


async def test_a_restart_rebuilds_the_same_answers(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    _, search = await prepared(ak_database, ring, tiering, embed=False)
    again = RecordIndex(ak_database, ring, tiering)
    await again.rebuild()
    fresh = CrossSearch(ak_database, ring, again)
    for query in ("webhook retries", "redis eviction", "E4012"):
        before = await search.search(ADMIN, query, mode="keyword")
        after = await fresh.search(ADMIN, query, mode="keyword")
        assert [(h.memory_id, h.score) for h in after.hits] == [(h.memory_id, h.score) for h in before.hits]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": "   "}, "query"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "limit": 0}, "limit"),
        (
            {
                "query": "x",
                "since": datetime(2026, 2, 1, tzinfo=UTC),
                "until": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "since",
        ),
        ({"query": "x", "cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_arguments_are_named(
    ak_database: Database, ring: KeyRing, tiering: Tiering, arguments: dict[str, Any], message: str
) -> None:
    _, search = await prepared(ak_database, ring, tiering, embed=False)
    rest = dict(arguments)
    query = rest.pop("query")
    with pytest.raises(InvalidArgumentError, match=message):
        await search.search(ADMIN, query, **rest)
    page = await search.search(ADMIN, "webhook", mode="keyword", limit=1)
    other_query = page.next_cursor
    assert other_query is not None
    with pytest.raises(InvalidArgumentError, match="cursor"):
        await search.search(ADMIN, "redis", mode="keyword", limit=1, cursor=other_query)
