"""The in-process keyword index (`postings.py`, `keywords.py`) ranks exactly as BM25 in SQL does,
on SQLite and PostgreSQL, and stays right when other processes write: what they store is found
once followed, what they update, delete or purge is re-checked before it is shown."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mahavishnu.platform.db import Database
from mahavishnu.platform.search.bm25 import K1, B
from mahavishnu.platform.search.postings import IndexedMemory, TenantPostings
from mahavishnu.session_buddy.keywords import Keywords
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.retention import purge
from mahavishnu.session_buddy.vault import Vault
from tests.session_buddy.conftest import LIMITS

WORDS = ["retry", "cache", "deploy", "token", "refund", "webhook", "quota", "E1234", "auth.py", "redis"]


def store(db: Database, vault: Vault, keywords: Keywords | None, tenant: str = "acme") -> Memories:
    return Memories(db, vault, LIMITS, tenant=tenant, author="ann", keywords=keywords)


def ranked(page: object) -> list[tuple[str, float]]:
    return [(h.memory.id, h.score) for h in page.hits]  # type: ignore[attr-defined]


async def fill(memories: Memories, rng: random.Random, count: int) -> list[str]:
    ids = []
    for number in range(count):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
        new = NewMemory(
            f"{words} #{number}",
            kind=rng.choice(["fact", "fix", "note"]),
            tags=[rng.choice(["ops", "api"])],
        )
        ids.append((await memories.store(new)).memory.id)
    return ids


async def test_the_index_ranks_every_page_as_sql_does(sb_database: Database, vault: Vault) -> None:
    keywords = Keywords(sb_database)
    indexed, plain = store(sb_database, vault, keywords), store(sb_database, vault, None)
    rng = random.Random(7)
    ids = await fill(indexed, rng, 60)
    for memory_id in ids[:8]:  # new versions, and deletions, through the indexed store
        await indexed.update(memory_id, {"content": f"{rng.choice(WORDS)} rewritten {memory_id}"})
    for memory_id in ids[8:12]:
        await indexed.delete(memory_id)
    await keywords.rebuild()  # ready from here; the writes above were put in as they committed
    rebuilt = Keywords(sb_database)
    await rebuilt.rebuild()
    from_scratch = store(sb_database, vault, rebuilt)
    queries = ["retry cache", "E1234", "auth.py deploy token", "rewritten", "quota webhook refund redis"]
    filters = [Filters(), Filters(kinds=["fix"]), Filters(tags=["ops"])]
    for query in queries:
        for narrowed in filters:
            for cursor_pages in range(3):
                cursor = None
                for _ in range(cursor_pages + 1):
                    expected = await plain.search(query, narrowed, mode="keyword", limit=5, cursor=cursor)
                    for candidate in (indexed, from_scratch):
                        got = await candidate.search(query, narrowed, mode="keyword", limit=5, cursor=cursor)
                        assert [i for i, _ in ranked(got)] == [i for i, _ in ranked(expected)]
                        assert [s for _, s in ranked(got)] == pytest.approx([s for _, s in ranked(expected)])
                        assert got.total == expected.total
                    cursor = expected.next_cursor
                    if cursor is None:
                        break
    assert len(keywords.postings.tenant("acme")) == 56


async def test_writes_of_other_processes_are_followed_and_rechecked(
    sb_database: Database, vault: Vault
) -> None:
    keywords = Keywords(sb_database)
    await keywords.rebuild()
    here, elsewhere = store(sb_database, vault, keywords), store(sb_database, vault, None)
    since = datetime.now(UTC)
    stored = (await elsewhere.store(NewMemory("flaky webhook retried by the worker"))).memory
    assert (await here.search("webhook", Filters(), mode="keyword")).hits == []  # not followed yet
    await keywords.follow(since)
    assert ranked(await here.search("webhook", Filters(), mode="keyword"))[0][0] == stored.id

    await elsewhere.update(stored.id, {"content": "quota exhausted on the billing api"})
    # not followed: the index still holds the old words, but the page is re-checked in SQL
    assert (await here.search("webhook", Filters(), mode="keyword")).hits == []
    assert ranked(await here.search("quota", Filters(), mode="keyword"))[0][0] == stored.id

    await elsewhere.delete(stored.id)
    assert (await here.search("quota", Filters(), mode="keyword")).hits == []
    assert keywords.postings.tenant("acme").version_of(stored.id) is None


async def test_a_purged_or_expired_memory_never_ranks(sb_database: Database, vault: Vault) -> None:
    keywords = Keywords(sb_database)
    await keywords.rebuild()
    memories = store(sb_database, vault, keywords)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    fleeting = (await memories.store(NewMemory("redis eviction storm", expires_at=soon))).memory
    kept = (await memories.store(NewMemory("redis cluster failover"))).memory
    assert {i for i, _ in ranked(await memories.search("redis", Filters(), mode="keyword"))} == {
        fleeting.id,
        kept.id,
    }
    later = soon + timedelta(seconds=1)
    report = await purge(sb_database, purge_after_days=30, now=later)
    assert report.expired == 1
    page = await memories.search("redis", Filters(), mode="keyword")
    assert [i for i, _ in ranked(page)] == [kept.id]
    assert page.total == 1


async def test_tenants_have_separate_indexes(sb_database: Database, vault: Vault) -> None:
    keywords = Keywords(sb_database)
    await keywords.rebuild()
    acme, globex = store(sb_database, vault, keywords), store(sb_database, vault, keywords, "globex")
    await acme.store(NewMemory("the refund ledger is append-only"))
    assert (await globex.search("refund ledger", Filters(), mode="keyword")).hits == []
    assert len(keywords.postings.tenant("globex")) == 0


# --- the index alone, against BM25 written out by hand --------------------------------------


def reference(memories: dict[str, IndexedMemory], tokens: list[bytes]) -> dict[str, float]:
    """Okapi BM25 as the textbook writes it, over every memory held."""
    documents = len(memories)
    average = max(sum(m.length for m in memories.values()) / documents, 1.0) if documents else 1.0
    scores: dict[str, float] = {}
    for token in dict.fromkeys(tokens):
        holders = [m for m in memories.values() if token in m.words]
        if not holders:
            continue
        weight = math.log(1 + (documents - len(holders) + 0.5) / (len(holders) + 0.5))
        for m in holders:
            tf = m.words[token]
            scores[m.memory_id] = scores.get(m.memory_id, 0.0) + weight * tf * (K1 + 1) / (
                tf + K1 * (1 - B + B * m.length / average)
            )
    return scores


_TOKENS = [bytes([n]) * 16 for n in range(6)]
_operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "remove"]),
        st.integers(0, 40),
        st.dictionaries(st.sampled_from(_TOKENS), st.integers(1, 4), min_size=1, max_size=4),
    ),
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(_operations, st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3))
def test_any_sequence_of_puts_and_removes_ranks_as_bm25(
    operations: list[tuple[str, int, dict[bytes, int]]], query: list[bytes]
) -> None:
    postings = TenantPostings()
    held: dict[str, IndexedMemory] = {}
    for operation, number, words in operations:
        memory_id = f"m{number:03}"
        if operation == "remove":
            postings.remove(memory_id)
            held.pop(memory_id, None)
            continue
        version = (held[memory_id].version + 1) if memory_id in held else 1
        memory = IndexedMemory(memory_id, version, sum(words.values()), None, words)
        postings.put(memory)
        held[memory_id] = memory
    expected = reference(held, query)
    got = postings.rank(query, now=0.0, limit=1000)
    assert dict(got.rows) == pytest.approx(expected)
    assert got.total == len(expected)
    scores = [s for _, s in got.rows]
    assert scores == sorted(scores, reverse=True)
    assert len(postings) == len(held)
