"""`POST /ingest/outcomes` on the real server over loopback (SQLite and PostgreSQL): the same
gate as memories (who may push, clear 4xx refusals), one row per (source, workflow, repository),
a replay changing nothing and a later close moving a row forward."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.akosha.conftest import MAX_BATCH_RECORDS, Akosha, token
from tests.akosha.outcomes import outcome, post_outcomes, stored_outcomes
from tests.support.tokens import claims, hs256


def fresh() -> str:
    return f"mhv-{uuid.uuid4().hex[:10]}"


async def test_outcomes_are_stored_and_a_replay_changes_nothing(akosha: Akosha) -> None:
    source = fresh()
    batch = [
        outcome("api"),
        outcome("web", "failed", attempts=3, duration=7.25),
        outcome("docs", "cancelled"),
    ]
    first = post_outcomes(akosha, source, batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 3, "unchanged": 0}
    assert post_outcomes(akosha, source, batch).json() == {"accepted": 0, "unchanged": 3}
    assert await stored_outcomes(akosha, source) == {
        ("wf-1", "api"): ("succeeded", 1, 1.5),
        ("wf-1", "web"): ("failed", 3, 7.25),
        ("wf-1", "docs"): ("cancelled", 1, 1.5),
    }


async def test_a_later_close_moves_a_row_forward_and_an_older_one_does_not(akosha: Akosha) -> None:
    source = fresh()
    first = datetime(2026, 12, 1, 12, tzinfo=UTC)
    later = datetime(2026, 12, 1, 13, tzinfo=UTC)
    assert post_outcomes(akosha, source, [outcome("web", "failed", finished_at=first)]).status_code == 200
    retried = post_outcomes(akosha, source, [outcome("web", "succeeded", attempts=4, finished_at=later)])
    assert retried.json() == {"accepted": 1, "unchanged": 0}
    stale = post_outcomes(akosha, source, [outcome("web", "failed", finished_at=first)])
    assert stale.json() == {"accepted": 0, "unchanged": 1}
    assert await stored_outcomes(akosha, source) == {("wf-1", "web"): ("succeeded", 4, 1.5)}


async def test_sources_keep_apart(akosha: Akosha) -> None:
    one, other = fresh(), fresh()
    assert post_outcomes(akosha, one, [outcome("api")]).json()["accepted"] == 1
    assert post_outcomes(akosha, other, [outcome("api", "failed")]).json()["accepted"] == 1
    assert await stored_outcomes(akosha, one) == {("wf-1", "api"): ("succeeded", 1, 1.5)}
    assert await stored_outcomes(akosha, other) == {("wf-1", "api"): ("failed", 1, 1.5)}


def test_an_admin_token_for_akosha_may_send_outcomes(akosha: Akosha) -> None:
    answer = post_outcomes(akosha, fresh(), [outcome("api")], token=token("admin"))
    assert answer.status_code == 200, answer.text


REFUSED = {
    "no token": (None, 401),
    "a wrong token": ("not-the-token", 401),
    "a token for Mahavishnu": (hs256(claims(role="admin", aud="mahavishnu")), 401),
    "an Akosha viewer": (token("viewer"), 403),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_who_may_not_send_outcomes(akosha: Akosha, case: str) -> None:
    credential, status = REFUSED[case]
    source = fresh()
    answer = post_outcomes(akosha, source, [outcome("api")], token=credential)
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json()["error"], str)
    assert await stored_outcomes(akosha, source) == {}


def _one(**changed: object) -> bytes:
    return json.dumps({"source": "s", "outcomes": [{**outcome("r"), **changed}]}).encode()


BAD = {
    "not JSON": (b"{nope", 400, "not valid JSON"),
    "no outcomes": (b'{"source": "s", "outcomes": []}', 422, "at least 1 item"),
    "a memory batch": (b'{"source": "s", "records": []}', 422, "outcomes"),
    "a negative attempt count": (_one(attempts=-1), 422, "attempts"),
    "a naive time": (_one(finished_at="2026-12-01T00:00:00"), 422, "finished_at"),
    "a repository name with a slash": (_one(repo="a/b"), 422, "repo"),
    "an unknown field": (_one(x=1), 422, "x"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_batches_get_a_clear_4xx(akosha: Akosha, case: str) -> None:
    body, status, says = BAD[case]
    answer = post_outcomes(akosha, "s", body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]


def test_a_batch_over_the_limit_is_refused(akosha: Akosha) -> None:
    too_many = [outcome(f"r{i}") for i in range(MAX_BATCH_RECORDS + 1)]
    answer = post_outcomes(akosha, fresh(), too_many)
    assert answer.status_code == 422, answer.text
    assert f"at most {MAX_BATCH_RECORDS}" in answer.json()["error"]


def test_outcomes_are_taken_by_post_only(akosha: Akosha) -> None:
    answer = httpx.get(f"{akosha.server.base}/ingest/outcomes", timeout=10)
    assert answer.status_code == 405
    assert "/ingest/outcomes" in answer.json()["error"]
