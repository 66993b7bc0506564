"""IDs by unique prefix, as git takes abbreviated hashes: within the caller's scope, an
ambiguous prefix named as such, an unknown one not found; short IDs for tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.orchestrator.workflows.shortids import short_ids
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError, NotFoundError
from tests.workflows.conftest import harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: these hold for every engine (see `conftest.ENGINES`)."""

FLEET = {"a1": ["alpha"], "b1": ["beta"]}
WORKFLOWS = {
    "ok": {"argv": ["true"], "timeout_seconds": 20},
    "fail": {"argv": ["false"], "timeout_seconds": 20},
}
ALPHA_ADMIN = Principal("ada", "admin", frozenset({"alpha"}))


def test_short_ids_are_the_shortest_unique_prefixes_of_at_least_eight() -> None:
    ids = [
        "019ade00-0000-7000-8000-000000000000",
        "019ade00-1234-7000-8000-000000000000",
        "019ade00-1235-7000-8000-000000000000",
        "019adf77-0000-7000-8000-000000000000",
    ]
    assert short_ids(ids) == {
        ids[0]: "019ade00-0",  # never ends on the dash
        ids[1]: "019ade00-1234",
        ids[2]: "019ade00-1235",
        ids[3]: "019adf77",
    }
    assert short_ids(ids[3:], among=ids[:3]) == {ids[3]: "019adf77"}
    assert short_ids([ids[0]], among=[ids[0]]) == {ids[0]: "019ade00"}


async def test_workflow_ids_by_unique_prefix(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        first = (await h.service.trigger(ADMIN, "ok", repos=["a1"])).workflow_id
        second = (await h.service.trigger(ADMIN, "ok", repos=["a1"])).workflow_id
        await h.wait(first), await h.wait(second)
        short = await h.service.short_workflow_ids(ADMIN, [first, second])
        assert all(len(s) >= 8 and full.startswith(s) for full, s in short.items())
        for full in (first, second):
            assert await h.service.resolve_workflow_id(ADMIN, short[full]) == full
            assert (await h.service.status(ADMIN, short[full].upper(), limit=0)).workflow_id == full
            assert await h.service.resolve_workflow_id(ADMIN, full[:13] + "…") in (first, second)

        with pytest.raises(InvalidArgumentError, match="ambiguous") as ambiguous:
            await h.service.status(ADMIN, first[:4])
        assert short[first] in str(ambiguous.value)
        assert short[second] in str(ambiguous.value)
        with pytest.raises(InvalidArgumentError, match="at least 4 characters"):
            await h.service.status(ADMIN, first[:3])
        for unknown in ("ffffffff", "not-an-id", first + "0"):
            with pytest.raises(NotFoundError, match="no workflow"):
                await h.service.status(ADMIN, unknown)


async def test_a_prefix_resolves_only_within_the_scope(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        alpha = (await h.service.trigger(ADMIN, "ok", repos=["a1"])).workflow_id
        beta = (await h.service.trigger(ADMIN, "ok", repos=["b1"])).workflow_id
        await h.wait(alpha), await h.wait(beta)
        common = alpha[:4]
        assert beta.startswith(common)
        # The beta workflow is invisible to an alpha caller: it neither matches nor makes a prefix ambiguous.
        assert await h.service.resolve_workflow_id(ALPHA_ADMIN, common) == alpha
        with pytest.raises(NotFoundError):
            await h.service.status(ALPHA_ADMIN, beta[:20])
        assert set(await h.service.short_workflow_ids(ALPHA_ADMIN, [alpha])) == {alpha}
        cancelled = await h.service.cancel(ALPHA_ADMIN, common)
        assert cancelled.workflow_id == alpha


async def test_dead_letter_ids_by_unique_prefix(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path, fleet=FLEET, workflows=WORKFLOWS) as h:
        await h.wait((await h.service.trigger(ADMIN, "fail")).workflow_id)
        letters = {d.repo: d.dead_letter_id for d in (await h.service.dead_letters(ADMIN)).dead_letters}
        short = await h.service.short_dead_letter_ids(ADMIN, list(letters.values()))
        shown = await h.service.dead_letter(ADMIN, short[letters["a1"]])
        assert shown.dead_letter_id == letters["a1"]
        with pytest.raises(InvalidArgumentError, match="ambiguous"):
            await h.service.dead_letter(ADMIN, letters["a1"][:4])
        assert await h.service.resolve_dead_letter_id(ALPHA_ADMIN, letters["a1"][:4]) == letters["a1"]
        with pytest.raises(NotFoundError):
            await h.service.retry_dead_letter(ALPHA_ADMIN, short[letters["b1"]])
        retried = await h.service.retry_dead_letter(ADMIN, short[letters["b1"]])
        assert (retried.dead_letter_id, retried.status) == (letters["b1"], "retrying")
