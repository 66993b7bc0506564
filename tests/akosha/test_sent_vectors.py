"""Vectors senders made: a memory is not embedded twice when its sender ran Akosha's model.

Session-Buddy embeds each memory for its own search; when it pushes the vector along (see
`wire.Embedding`), Akosha keeps it with the record and indexes it as sent. Another model's
vector is set aside and the text embedded here; a bad vector is refused with the field named."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from mahavishnu.akosha.cross_search import CrossSearch
from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.models import StoredVector
from mahavishnu.akosha.record_index import RecordIndex, Tiering
from mahavishnu.akosha.vector_store import Vector
from mahavishnu.akosha.wire import Batch, Embedding
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.akosha.records import batch, parsed, tombstone, upsert
from tests.akosha.test_tiers import DIMENSIONS, CountingEmbedder

ADMIN = Principal(subject="admin", role="admin")
NEW_WORDS = "violet gearbox lighthouse"


async def _ready_index(
    db: Database, ring: KeyRing, tiering: Tiering, embedder: CountingEmbedder
) -> RecordIndex:
    index = RecordIndex(db, ring, tiering)
    await index.rebuild()
    index.use_embedder(embedder)
    await index.embed_pending()
    return index


def _inbox(db: Database, ring: KeyRing, index: RecordIndex) -> Inbox:
    return Inbox(
        db,
        ring,
        IngestMetrics(Metrics(prefix="t")),
        max_records=1000,
        on_stored=index.note,
        vectors=index.vector_store,
    )


def _sent(model: str, text: str, embedder: CountingEmbedder) -> dict[str, str]:
    return Embedding.of(model, embedder.embed([text])[0] * 3.0).model_dump()  # not unit length: normalised


async def _drain(index: RecordIndex) -> None:
    while await index.embed_pending():
        pass


async def test_a_vector_of_akosha_s_model_is_kept_and_searched_as_sent(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    embedder = CountingEmbedder()
    index = await _ready_index(ak_database, ring, tiering, embedder)
    # The vector sent is of other words than the content: only the sent one can make it match.
    sent = _sent(embedder.model_id, "violet gearbox lighthouse", embedder)
    embedder.embedded = 0
    await _inbox(ak_database, ring, index).take(
        "box", parsed(upsert("m1", 1, content="quarterly tax forms", embedding=sent))
    )
    assert index.unembedded == 1, "waiting for the loop's next turn"
    await _drain(index)
    assert embedder.embedded == 0, "the sender's vector was used, nothing embedded"
    assert index.unembedded == 0

    page = await CrossSearch(ak_database, ring, index).search(
        ADMIN, "violet gearbox lighthouse", mode="semantic", limit=1
    )
    assert [h.memory_id for h in page.hits] == ["m1"]
    assert page.hits[0].score == pytest.approx(1.0, abs=1e-4), "stored L2-normalised"

    kept = await index.vectors.store.vectors(["box/m1"])  # type: ignore[union-attr]
    assert np.allclose(kept["box/m1"][1], embedder.embed(["violet gearbox lighthouse"])[0], atol=1e-6)
    embedder.embedded = 0
    restarted = await _ready_index(ak_database, ring, tiering, embedder)
    assert (restarted.unembedded, embedder.embedded) == (0, 0), "a restart loads it"


async def test_another_model_s_vector_is_set_aside_and_the_text_embedded(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    embedder = CountingEmbedder()
    index = await _ready_index(ak_database, ring, tiering, embedder)
    sent = _sent("someone-elses-model", "violet gearbox lighthouse", embedder)
    short = Embedding.of(embedder.model_id, np.ones(DIMENSIONS // 2, dtype=np.float32)).model_dump()
    embedder.embedded = 0
    await _inbox(ak_database, ring, index).take(
        "box",
        parsed(
            upsert("m1", 1, content="quarterly tax forms", embedding=sent),
            upsert("m2", 1, content="annual tax forms", embedding=short),
        ),
    )
    await _drain(index)
    assert embedder.embedded == 2
    page = await CrossSearch(ak_database, ring, index).search(
        ADMIN, "quarterly tax forms", mode="semantic", limit=1
    )
    assert [h.memory_id for h in page.hits] == ["m1"]


async def test_a_vector_for_a_version_the_store_did_not_take_is_not_kept(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    """A replay of an old version, after its tombstone, must leave no orphaned vector behind."""
    embedder = CountingEmbedder()
    index = await _ready_index(ak_database, ring, tiering, embedder)
    inbox = _inbox(ak_database, ring, index)
    sent = _sent(embedder.model_id, "violet gearbox lighthouse", embedder)
    await inbox.take("box", parsed(tombstone("m1", 3)))
    result = await inbox.take("box", parsed(upsert("m1", 2, embedding=sent)))
    assert (result.accepted, result.unchanged) == (0, 1)
    await _drain(index)
    async with ak_database.session() as session:
        assert await session.scalar(select(func.count()).select_from(StoredVector)) == 0
    assert index.tier_sizes() == {"hot": 0, "warm": 0, "cold": 0}
    assert "box/m1" not in index.entries


@pytest.mark.parametrize("then", ["tombstoned", "replaced"])
async def test_a_record_changed_while_its_vector_goes_in_keeps_only_its_current_vector(
    ak_database: Database, ring: KeyRing, tiering: Tiering, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """The hot tier's add runs off the event loop, so ingest may tombstone or replace the record
    meanwhile: the vector of the version that is no longer current must not stay behind."""
    embedder = CountingEmbedder()
    index = await _ready_index(ak_database, ring, tiering, embedder)
    inbox = _inbox(ak_database, ring, index)
    await inbox.take("box", parsed(upsert("m1", 1, content="quarterly tax forms")))
    assert index.vectors is not None
    add = index.vectors.add

    async def add_while_ingest_goes_on(rows: Sequence[tuple[str, int, Vector]]) -> None:
        if rows:  # the tombstone or new version comes while the add runs, once
            changed = tombstone("m1", 2) if then == "tombstoned" else upsert("m1", 2, content=NEW_WORDS)
            await inbox.take("box", parsed(changed))
            monkeypatch.setattr(index.vectors, "add", add)
        await add(rows)

    monkeypatch.setattr(index.vectors, "add", add_while_ingest_goes_on)
    await _drain(index)
    if then == "tombstoned":
        assert index.tier_sizes() == {"hot": 0, "warm": 0, "cold": 0}
        return
    assert index.vectors.hot.version_of("box/m1") == 2
    page = await CrossSearch(ak_database, ring, index).search(ADMIN, NEW_WORDS, mode="semantic", limit=1)
    assert [(h.memory_id, h.score) for h in page.hits] == [("m1", pytest.approx(1.0, abs=1e-4))]


async def test_a_replica_loads_the_vectors_another_stored_instead_of_embedding(
    ak_database: Database, ring: KeyRing, tiering: Tiering
) -> None:
    """Two Akosha processes on one database: what one ingested (a sent vector) or embedded
    itself, the other follows and indexes from the store, embedding nothing."""
    here_embedder, there_embedder = CountingEmbedder(), CountingEmbedder()
    here = await _ready_index(ak_database, ring, tiering, here_embedder)
    there = await _ready_index(ak_database, ring, tiering, there_embedder)
    since = datetime.now(UTC)
    sent = _sent(here_embedder.model_id, "violet gearbox lighthouse", here_embedder)
    await _inbox(ak_database, ring, here).take(
        "box",
        parsed(
            upsert("m1", 1, content="quarterly tax forms", embedding=sent),
            upsert("m2", 1, content="amber ferry timetable"),
        ),
    )
    here_embedder.embedded = 0
    await _drain(here)
    assert here_embedder.embedded == 1, "only the record sent without a vector"

    await there.follow(since)
    assert there.unembedded == 2
    await _drain(there)
    assert (there.unembedded, there_embedder.embedded) == (0, 0)
    search = CrossSearch(ak_database, ring, there)
    for query, memory_id in (("violet gearbox lighthouse", "m1"), ("amber ferry timetable", "m2")):
        page = await search.search(ADMIN, query, mode="semantic", limit=1)
        assert [h.memory_id for h in page.hits] == [memory_id]
        assert page.hits[0].score == pytest.approx(1.0, abs=1e-4)

    # A newer version the other process has not embedded yet is embedded here, once.
    since, there_embedder.embedded = datetime.now(UTC), 0  # (the searches embedded their queries)
    await _inbox(ak_database, ring, here).take("box", parsed(upsert("m2", 2, content="amber ferry fares")))
    await there.follow(since)
    await _drain(there)
    assert there_embedder.embedded == 1


def _base64(values: list[float]) -> str:
    return base64.b64encode(np.array(values, dtype="<f4").tobytes()).decode()


def _with_vector(vector: str, model: str = "m") -> dict[str, object]:
    return batch(upsert("m1", 1, embedding={"model": model, "vector": vector}))


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        ("not base64!", "not base64"),
        ("AAA=", "multiple of 4 bytes"),
        (_base64([np.nan, 1.0]), "finite and not all zero"),
        (_base64([np.inf, 1.0]), "finite and not all zero"),
        (_base64([0.0] * 8), "finite and not all zero"),
        ("", "multiple of 4 bytes"),
        ("A" * 30_000, "at most"),
    ],
)
def test_a_bad_vector_is_refused_naming_the_field(vector: str, problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Batch.model_validate(_with_vector(vector))
    (error,) = refused.value.errors()
    assert error["loc"][-2:] == ("embedding", "vector")
    assert problem in str(error["msg"])
