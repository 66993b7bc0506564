"""`POST /ingest/memories` on the real server over loopback (SQLite and PostgreSQL): who may
push, what a bad request is answered (a clear 4xx in JSON, never a 5xx), and what is stored."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from mahavishnu.platform.auth import issue_token
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.akosha.conftest import (
    MAX_BATCH_RECORDS,
    MAX_BODY_BYTES,
    TOKEN,
    Akosha,
    start_akosha,
    stop_akosha,
    token,
)
from tests.akosha.records import batch, tombstone, upsert
from tests.conftest import PG_URL
from tests.support.client import mcp_client
from tests.support.server import SECRET
from tests.support.tokens import claims, hs256


def fresh() -> str:
    """A source of the test's own: the module's server is shared."""
    return f"src-{uuid.uuid4().hex[:10]}"


def records_of(source: str, *items: tuple[str, int, str]) -> list[dict[str, Any]]:
    return [
        upsert(m, v, source=source) if op == "upsert" else tombstone(m, v, source=source)
        for m, v, op in items
    ]


async def stored(akosha: Akosha, source: str) -> dict[str, tuple[int, str, str | None]]:
    """memory id → version, state, content, read through the official client as an admin."""
    async with mcp_client(akosha.server.url, token("admin")) as client:
        result = await client.call_tool(
            "list_records", {"source": source, "include_tombstoned": True, "limit": 200}
        )
    assert result.structured_content is not None, result
    return {
        r["memory_id"]: (r["version"], r["state"], (r["document"] or {}).get("content"))
        for r in result.structured_content["records"]
    }


def test_the_api_token_ingests_and_a_replay_changes_nothing(akosha: Akosha) -> None:
    source = fresh()
    body = batch(
        *records_of(source, ("m1", 1, "upsert"), ("m2", 1, "upsert"), ("m3", 2, "tombstone")), source=source
    )
    first = akosha.post(body)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 3, "unchanged": 0}
    assert akosha.post(body).json() == {"accepted": 0, "unchanged": 3}


def test_each_source_s_lag_and_last_batch_are_exported(akosha: Akosha) -> None:
    source = fresh()
    written = datetime.now(UTC) - timedelta(minutes=10)
    record = upsert("m1", 1, source=source, updated_at=written.isoformat())
    before = time.time()
    assert akosha.post(batch(record, source=source)).status_code == 200
    lag = akosha.server.metric(f'akosha_source_lag_seconds{{source="{source}"}}')
    assert lag is not None
    assert 600 <= lag < 900
    last = akosha.server.metric(f'akosha_source_last_ingest_timestamp_seconds{{source="{source}"}}')
    assert last is not None
    assert last >= before - 1
    assert akosha.server.metric('akosha_index_vectors{tier="hot"}') is not None


async def test_reordered_batches_leave_the_same_store(akosha: Akosha) -> None:
    history = [
        ("a", 1, "upsert"),
        ("a", 2, "upsert"),
        ("b", 1, "upsert"),
        ("b", 2, "tombstone"),
        ("c", 3, "upsert"),
    ]
    in_order, reversed_, shuffled = fresh(), fresh(), fresh()
    random_order = random.Random(3).sample(history, len(history))
    for source, order in (
        (in_order, history),
        (reversed_, history[::-1]),
        (shuffled, random_order + history),
    ):
        for item in order:
            assert akosha.post(batch(*records_of(source, item), source=source)).status_code == 200
    expected = {
        "a": (2, "live", "a at version 2"),
        "b": (2, "tombstoned", None),
        "c": (3, "live", "c at version 3"),
    }
    for source in (in_order, reversed_, shuffled):
        assert await stored(akosha, source) == expected


def test_an_admin_token_for_akosha_may_ingest(akosha: Akosha) -> None:
    source = fresh()
    answer = akosha.post(batch(upsert("m", 1, source=source), source=source), token=token("admin"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 1, "unchanged": 0}


def _session_buddy_token() -> str:
    settings = SessionBuddySettings(auth_secret=SECRET)  # type: ignore[arg-type]
    return issue_token(settings, subject="ann", role="admin", ttl_seconds=600, tenant="acme")


REFUSED = {
    "no token": (None, {}, 401),
    "a wrong token": ("not-the-token", {}, 401),
    "the api token with one more character": (TOKEN + "x", {}, 401),
    "a Session-Buddy user's token": (_session_buddy_token(), {}, 401),
    "a token for Mahavishnu": (hs256(claims(role="admin", aud="mahavishnu")), {}, 401),
    "an expired Akosha admin token": (hs256(claims(role="admin", aud="akosha", exp=1)), {}, 401),
    "an Akosha viewer": (token("viewer"), {}, 403),
    "an Akosha operator": (token("operator"), {}, 403),
}


@pytest.mark.parametrize("case", REFUSED)
def test_who_may_not_ingest(akosha: Akosha, case: str) -> None:
    credential, headers, status = REFUSED[case]
    source = fresh()
    body = batch(upsert("m", 1, source=source), source=source)
    answer = akosha.post(body, token=credential, **headers)
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json()["error"], str)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert akosha.post(body).json() == {"accepted": 1, "unchanged": 0}, "the refused batch stored nothing"


def test_a_token_in_the_url_or_another_scheme_is_refused(akosha: Akosha) -> None:
    body = json.dumps(batch(upsert("m", 1))).encode()
    in_url = httpx.post(f"{akosha.ingest_url}?access_token={TOKEN}", content=body, timeout=10)
    assert in_url.status_code == 401
    assert "Authorization header" in in_url.json()["error"]
    basic = akosha.post(body, token=None, Authorization=f"Basic {TOKEN}")
    assert basic.status_code == 401


def test_oversized_bodies_are_refused_before_they_are_read(akosha: Akosha) -> None:
    source = fresh()
    big = upsert("m", 1, source=source, content="x" * (MAX_BODY_BYTES + 1))
    declared = akosha.post(batch(big, source=source))
    assert declared.status_code == 413
    assert declared.json() == {"error": f"request body over {MAX_BODY_BYTES} bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: judged while reading
        data = json.dumps(batch(big, source=source)).encode()
        for start in range(0, len(data), 16384):
            yield data[start : start + 16384]

    streamed = httpx.post(
        akosha.ingest_url,
        content=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert streamed.status_code == 413


def _valid(source: str = "box", **changes: Any) -> dict[str, Any]:
    return batch({**upsert("m", 1, source=source), **changes}, source=source)


BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "not JSON": (b"source=box", 400, "the body is not valid JSON"),
    "empty": (b"", 400, "the body is not valid JSON"),
    "not UTF-8": (b'{"source": "\xff\xfe"}', 400, "the body is not valid JSON"),
    "cut short": (json.dumps(_valid()).encode()[:-5], 400, "the body is not valid JSON"),
    "too deep": (b"[" * 200 + b"]" * 200, 400, "nested deeper than 64 levels"),
    "null": (b"null", 422, "invalid batch"),
    "an array": (b"[]", 422, "invalid batch"),
    "no records": (b'{"source": "box"}', 422, "records: required"),
    "empty records": (
        json.dumps({"source": "box", "records": []}).encode(),
        422,
        "records: must have at least 1",
    ),
    "a bad source name": (json.dumps(_valid("../etc")).encode(), 422, "source: must match the pattern"),
    "no version": (
        json.dumps(batch({k: v for k, v in upsert("m", 1).items() if k != "version"})).encode(),
        422,
        "records[0].version: required",
    ),
    "a version as a string": (
        json.dumps(_valid(version="1")).encode(),
        422,
        "records[0].version: expected an integer",
    ),
    "a version as a boolean": (json.dumps(_valid(version=True)).encode(), 422, "records[0].version"),
    "version 0": (json.dumps(_valid(version=0)).encode(), 422, "records[0].version: must be at least 1"),
    "a huge version": (json.dumps(_valid(version=10**30)).encode(), 422, "records[0].version"),
    "an unknown op": (json.dumps(_valid(op="delete")).encode(), 422, "records[0]"),
    "an unknown field": (json.dumps(_valid(colour="red")).encode(), 422, "records[0].colour: not a known"),
    "an upsert without content": (json.dumps(_valid(content="")).encode(), 422, "records[0].content"),
    "a time without a zone": (
        json.dumps(_valid(created_at="2026-01-01T00:00:00")).encode(),
        422,
        "created_at",
    ),
    "importance over 1": (json.dumps(_valid(importance=2)).encode(), 422, "records[0].importance"),
    "a record of another source": (
        json.dumps(batch(upsert("m", 1, source="other"), source="box")).encode(),
        422,
        "records[0].source: must be the batch's source ('box')",
    ),
    "too many records": (
        json.dumps(batch(*(upsert(f"m{i}", 1) for i in range(MAX_BATCH_RECORDS + 1)))).encode(),
        422,
        f"records: at most {MAX_BATCH_RECORDS} in one batch",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_get_a_clear_4xx(akosha: Akosha, case: str) -> None:
    body, status, message = BAD_BODIES[case]
    answer = akosha.post(body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert message in answer.json()["error"]


def test_mangled_bodies_never_get_a_5xx(akosha: Akosha) -> None:
    """A valid batch, cut, flipped and spliced at random: every answer is a 2xx or a 4xx."""
    valid = json.dumps(batch(*records_of("box", ("m", 1, "upsert"), ("n", 2, "tombstone")))).encode()
    shuffler = random.Random(99)
    statuses = set()
    for _ in range(150):
        body = bytearray(valid)
        for _ in range(shuffler.randint(1, 4)):
            at = shuffler.randrange(len(body))
            choice = shuffler.random()
            if choice < 0.4:
                body[at] = shuffler.choice(b'{}[]",:0123456789-etnul\\ \xff')
            elif choice < 0.7:
                del body[at : at + shuffler.randint(1, 20)]
            else:
                body[at:at] = shuffler.choice([b"[", b"{", b'"x":', b"1e999", b"null,", b"\x00"])
        answer = akosha.post(bytes(body))
        statuses.add(answer.status_code)
        assert answer.status_code < 500, (bytes(body), answer.text)
    assert statuses & {400, 422}


def test_only_posted_json_is_taken(akosha: Akosha) -> None:
    get = httpx.get(akosha.ingest_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert get.json() == {"error": "/ingest/memories takes a batch by POST only"}
    form = akosha.post(json.dumps(_valid()).encode(), **{"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert form.json() == {"error": "a batch is sent as application/json"}
    charset = akosha.post(
        json.dumps(_valid(fresh())).encode(), **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200, charset.text


async def test_what_is_stored_is_encrypted_at_rest(akosha: Akosha) -> None:
    """A canary stored through the endpoint is read back through the tools, and appears in no
    byte of the SQLite files (database, WAL) nor in any column of the PostgreSQL table."""
    source, canary = fresh(), f"canary-{uuid.uuid4().hex}"
    record = upsert("m", 1, source=source, content=f"the {canary} sings", tags=[canary], project=canary)
    assert akosha.post(batch(record, source=source)).status_code == 200
    assert (await stored(akosha, source))["m"] == (1, "live", f"the {canary} sings")
    if akosha.schema is None:
        files = list(akosha.folder.glob("akosha.db*"))
        assert files
        assert all(canary.encode() not in p.read_bytes() for p in files)
    else:
        connection = await asyncpg.connect(PG_URL, server_settings={"search_path": akosha.schema})
        try:
            rows = await connection.fetch("SELECT * FROM akosha_records WHERE source = $1", source)
        finally:
            await connection.close()
        assert len(rows) == 1
        assert all(
            canary.encode() not in (v if isinstance(v, bytes) else str(v).encode()) for v in rows[0].values()
        )


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[Akosha]:
    running = start_akosha(tmp_path, "sqlite", RATE_LIMIT_BURST="3", RATE_LIMIT_PER_MINUTE="1000")
    yield running
    stop_akosha(running)


def test_senders_have_a_budget(throttled: Akosha) -> None:
    answers = [throttled.post(batch(upsert("m", v), source="box")) for v in range(1, 9)]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate limit exceeded" in refused.json()["error"]
    wrong = [throttled.post(batch(upsert("m", 1)), token="guess") for _ in range(8)]
    assert {a.status_code for a in wrong} >= {401, 429}, "token guessing meets the address's budget"
