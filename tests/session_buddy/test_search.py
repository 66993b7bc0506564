"""Search by meaning and hybrid search on SQLite and PostgreSQL, with the deterministic test
embedder (the real model is exercised over HTTP in test_server.py): the embedding workers'
code path embeds new and updated memories, tenants never see each other's vectors, delete and
purge leave no vector, rotation re-seals vectors, and a restart rebuilds the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError
from mahavishnu.platform.search.embeddings import HashingEmbedder
from mahavishnu.session_buddy import rotation
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.models import MemoryVector
from mahavishnu.session_buddy.retention import purge
from mahavishnu.session_buddy.rotation import Rotation, remaining
from mahavishnu.session_buddy.vault import Vault, open_vault
from tests.session_buddy.conftest import LIMITS


@pytest.fixture
async def meaning(sb_database: Database, vault: Vault) -> Meaning:
    found = Meaning(sb_database, HashingEmbedder(256))
    await found.rebuild(vault)
    return found


def store(db: Database, vault: Vault, meaning: Meaning, tenant: str) -> Memories:
    return Memories(db, vault, LIMITS, tenant=tenant, author="ann", meaning=meaning)


async def embed_all(meaning: Meaning, vault: Vault) -> None:
    while await meaning.embed_pending(vault):
        pass


async def vectors(db: Database) -> list[tuple[str, str, int]]:
    async with db.session() as session:
        rows = await session.execute(
            select(MemoryVector.memory_id, MemoryVector.tenant, MemoryVector.version)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def ids(page: object) -> list[str]:
    return [h.memory.id for h in page.hits]  # type: ignore[attr-defined]


async def test_workers_embed_new_and_updated_memories(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme = store(sb_database, vault, meaning, "acme")
    first = (await acme.store(NewMemory("cache warming fixes cold start latency"))).memory
    assert await vectors(sb_database) == []  # storing does not embed
    with pytest.raises(InvalidArgumentError):
        await acme.search("x", Filters(), mode="fuzzy")
    assert ids(await acme.search("cold start latency", Filters(), mode="semantic")) == []
    await embed_all(meaning, vault)
    assert await vectors(sb_database) == [(first.id, "acme", 1)]
    assert ids(await acme.search("cold start latency", Filters(), mode="semantic")) == [first.id]

    await acme.update(first.id, {"content": "switched the queue broker to redis streams"})
    # the stale vector (version 1) is never matched: re-checked against the current version
    assert ids(await acme.search("cold start latency", Filters(), mode="semantic")) == []
    await embed_all(meaning, vault)
    assert await vectors(sb_database) == [(first.id, "acme", 2)]
    assert ids(await acme.search("redis streams broker", Filters(), mode="semantic")) == [first.id]


async def test_hybrid_finds_identifiers_and_unembedded_memories(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme = store(sb_database, vault, meaning, "acme")
    for i in range(12):
        await acme.store(NewMemory(f"the login test failed again on run {i} with a timeout"))
    target = (await acme.store(NewMemory("E4012 raised by tests/api/test_login.py::test_expiry"))).memory
    await embed_all(meaning, vault)
    for query in ("E4012", "tests/api/test_login.py", "test_expiry"):
        assert ids(await acme.search(query, Filters(), mode="hybrid", limit=3))[0] == target.id
    fresh = (await acme.store(NewMemory("TypeError in src/billing/refunds.py"))).memory
    assert ids(await acme.search("src/billing/refunds.py", Filters(), mode="hybrid"))[0] == fresh.id
    paged = await acme.search("login test timeout", Filters(), mode="hybrid", limit=5)
    rest = await acme.search(
        "login test timeout", Filters(), mode="hybrid", limit=5, cursor=paged.next_cursor
    )
    assert len(paged.hits) == len(rest.hits) == 5
    assert not set(ids(paged)) & set(ids(rest))


async def test_hybrid_anchors_a_question_on_the_word_most_of_its_neighbours_hold(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme = store(sb_database, vault, meaning, "acme")
    for i in range(12):
        await acme.store(NewMemory(f"billing weekly report number {i} sent"))
    other = (await acme.store(NewMemory("auth pods keep restarting every hour"))).memory
    answer = (await acme.store(NewMemory("billing pods were OOM-killed"))).memory
    await embed_all(meaning, vault)
    question = "billing pods keep restarting"
    # the whole question's nearest memory is about another service
    assert ids(await acme.search(question, Filters(), mode="semantic", limit=3))[0] == other.id
    # most of its neighbours hold "billing": the rest of the question decides among those that do
    assert ids(await acme.search(question, Filters(), mode="hybrid", limit=3))[0] == answer.id


async def test_near_duplicates_give_way_but_stay_on_later_pages(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme = store(sb_database, vault, meaning, "acme")
    notes = [
        (await acme.store(NewMemory(f"deploy note: rollout of the gateway finished in {n} minutes"))).memory
        for n in (4, 5, 6)
    ]
    distinct = (await acme.store(NewMemory("gateway rollout postponed: the certificate expired"))).memory
    for dish in ("soup", "pasta", "curry", "ramen", "tacos"):
        await acme.store(NewMemory(f"lunch menu today: {dish}"))
    await embed_all(meaning, vault)
    question = "gateway rollout finished"
    semantic = ids(await acme.search(question, Filters(), mode="semantic", limit=3))
    assert set(semantic) == {n.id for n in notes}
    first = await acme.search(question, Filters(), mode="hybrid", limit=2)
    assert ids(first)[0] in {n.id for n in notes}
    assert ids(first)[1] == distinct.id
    rest = await acme.search(question, Filters(), mode="hybrid", limit=2, cursor=first.next_cursor)
    assert set(ids(rest)) == {n.id for n in notes} - {ids(first)[0]}


async def test_tenants_never_see_each_others_vectors(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme, globex = store(sb_database, vault, meaning, "acme"), store(sb_database, vault, meaning, "globex")
    theirs = (await globex.store(NewMemory("globex secret plan for the merger"))).memory
    await acme.store(NewMemory("acme picnic on friday"))
    await embed_all(meaning, vault)
    for mode in ("semantic", "hybrid"):
        found = await acme.search("globex secret plan for the merger", Filters(), mode=mode, limit=50)
        assert theirs.id not in ids(found)
    assert meaning.vectors_of("acme").version_of(theirs.id) is None
    assert ids(await globex.search("secret merger plan", Filters(), mode="semantic")) == [theirs.id]


async def test_delete_and_purge_leave_no_vector(
    sb_database: Database, vault: Vault, meaning: Meaning
) -> None:
    acme = store(sb_database, vault, meaning, "acme")
    deleted = (await acme.store(NewMemory("rotate the staging certificates"))).memory
    expiring = (
        await acme.store(
            NewMemory("temporary vpn password hint", expires_at=datetime.now(UTC) + timedelta(hours=1))
        )
    ).memory
    await embed_all(meaning, vault)
    assert len(await vectors(sb_database)) == 2
    await acme.delete(deleted.id)
    assert [v[0] for v in await vectors(sb_database)] == [expiring.id]
    assert deleted.id not in ids(await acme.search("staging certificates", Filters(), mode="semantic"))
    await purge(sb_database, purge_after_days=30, now=datetime.now(UTC) + timedelta(days=1))
    assert await vectors(sb_database) == []
    assert ids(await acme.search("vpn password", Filters(), mode="hybrid")) == []


async def test_rotation_reseals_vectors_and_a_restart_rebuilds_the_index(
    sb_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "BATCH", 2)
    old, new = generate_key(), generate_key()
    vault = await open_vault(sb_database, KeyRing.parse(old))
    meaning = Meaning(sb_database, HashingEmbedder(256))
    await meaning.rebuild(vault)
    acme = store(sb_database, vault, meaning, "acme")
    stored = [
        (await acme.store(NewMemory(f"deploy note {i} about blue green rollout"))).memory for i in range(5)
    ]
    await embed_all(meaning, vault)
    during = KeyRing.parse(f"{new},{old}")
    async with sb_database.session() as session:
        stale = await session.scalar(select(func.count()).select_from(MemoryVector))
    assert stale == 5
    assert await remaining(sb_database, during) == 5 + 5 + 5
    await Rotation(during).run(sb_database)
    assert await remaining(sb_database, during) == 0

    restarted_vault = await open_vault(sb_database, KeyRing.parse(new))  # the old key is gone
    restarted = Meaning(sb_database, HashingEmbedder(256))
    assert await restarted.rebuild(restarted_vault) == 5
    again = store(sb_database, restarted_vault, restarted, "acme")
    found = await again.search("blue green rollout deploy note 3", Filters(), mode="semantic", limit=5)
    assert set(ids(found)) == {m.id for m in stored}
    assert ids(found)[0] == stored[3].id


async def test_another_process_vectors_are_followed_per_tenant(
    sb_database: Database, vault: Vault, meaning: Meaning, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes on one database: what one embedded, the other's index takes in by
    following (each tenant's vectors in its own index), and a restart rebuilds in chunks."""
    other = Meaning(sb_database, HashingEmbedder(256))
    await other.rebuild(vault)
    since = datetime.now(UTC)
    written = {}
    for tenant in ("acme", "globex"):
        mine = store(sb_database, vault, meaning, tenant)
        for text in ("cache warming fixes cold start latency", "pinned the broker to redis streams"):
            written[tenant, text] = (await mine.store(NewMemory(f"{tenant}: {text}"))).memory.id
    await embed_all(meaning, vault)
    assert other.index.size() == 0

    await other.follow(vault, since)
    assert other.index.size() == 4
    for tenant in ("acme", "globex"):
        theirs = store(sb_database, vault, other, tenant)
        hits = ids(await theirs.search("cold start latency", Filters(), mode="semantic", limit=1))
        assert hits == [written[tenant, "cache warming fixes cold start latency"]]

    monkeypatch.setattr("mahavishnu.session_buddy.meaning._REBUILD_CHUNK", 3)
    restarted = Meaning(sb_database, HashingEmbedder(256))
    assert await restarted.rebuild(vault) == 4
    assert {t: len(restarted.index.tenant(t)) for t in ("acme", "globex")} == {"acme": 2, "globex": 2}
