"""`trigger_workflow`'s idempotency key: one workflow per caller and key, settled by the database.

Concurrent triggers go through two services with connection pools of their own on one database,
as two replicas would; the unique index decides, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.workflows.idempotency import KEY_MAX_LENGTH, IdempotencyConflictError
from mahavishnu.orchestrator.workflows.models import RepoRun, Workflow
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.platform.auth import LOCAL_PRINCIPAL as ADMIN
from mahavishnu.platform.auth import Principal
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import InvalidArgumentError
from tests.workflows.conftest import Harness, harness

pytestmark = pytest.mark.usefixtures("engine_kind")
"""A contract: the key is the service's and the database's, whatever engine runs the workflow."""

CALLS = 10


async def counts(database: Database) -> tuple[int, int]:
    """(workflows, runs) stored."""
    async with database.session() as session:
        workflows = await session.scalar(select(func.count()).select_from(Workflow))
        runs = await session.scalar(select(func.count()).select_from(RepoRun))
    return workflows or 0, runs or 0


def replica_service(h: Harness, database: Database) -> WorkflowService:
    """A second service on the same database with a connection pool of its own (no engine)."""
    store = ManifestStore.from_settings(h.settings)
    store.reload_if_changed()
    return WorkflowService(database, store, h.settings.workflow_definitions())


async def test_concurrent_triggers_with_one_key_make_one_workflow(database: Database, tmp_path: Path) -> None:
    other_db = Database(database.url, schema=database.schema)
    try:
        async with harness(database, tmp_path) as h:
            services = [h.service, replica_service(h, other_db)]
            summaries = await asyncio.gather(
                *(
                    services[i % 2].trigger(ADMIN, "git-status", tag="python", idempotency_key="deploy-42")
                    for i in range(CALLS)
                )
            )
            assert len({s.workflow_id for s in summaries}) == 1
            assert await counts(database) == (1, 2)  # one workflow, one run per python repo
            view = await h.wait(summaries[0].workflow_id)
    finally:
        await other_db.dispose()
    assert view.counts == {"succeeded": 2}


async def test_a_retry_answers_with_the_first_workflow_even_once_it_ended(
    database: Database, tmp_path: Path
) -> None:
    async with harness(database, tmp_path) as h:
        first = await h.service.trigger(ADMIN, "git-status", repos=["beta", "alpha"], idempotency_key="k1")
        await h.wait(first.workflow_id)
        again = await h.service.trigger(ADMIN, "git-status", repos=["alpha", "beta"], idempotency_key="k1")
        other = await h.service.trigger(ADMIN, "git-status", repos=["alpha", "beta"], idempotency_key="k2")
        unkeyed = await h.service.trigger(ADMIN, "git-status", repos=["alpha", "beta"])
        assert again.workflow_id == first.workflow_id
        assert again.status == "succeeded"
        assert len({first.workflow_id, other.workflow_id, unkeyed.workflow_id}) == 3
        assert (await counts(database))[0] == 3


async def test_the_key_belongs_to_its_caller(database: Database, tmp_path: Path) -> None:
    ops = Principal(subject="ops", role="operator")
    async with harness(database, tmp_path) as h:
        mine = await h.service.trigger(ADMIN, "git-status", repos=["alpha"], idempotency_key="same")
        theirs = await h.service.trigger(ops, "git-status", repos=["alpha"], idempotency_key="same")
        assert mine.workflow_id != theirs.workflow_id
        assert theirs.requested_by == "ops"


async def test_the_same_key_with_other_arguments_is_a_conflict(database: Database, tmp_path: Path) -> None:
    async with harness(database, tmp_path) as h:
        first = await h.service.trigger(ADMIN, "git-status", repos=["alpha"], idempotency_key="once")
        changed = [
            h.service.trigger(ADMIN, "git-status", repos=["beta"], idempotency_key="once"),
            h.service.trigger(ADMIN, "git-status", repos=["alpha"], tag="python", idempotency_key="once"),
        ]
        for call in changed:
            with pytest.raises(IdempotencyConflictError, match=first.workflow_id) as refused:
                await call
            assert refused.value.http_status == 409
        narrower = Principal(subject=ADMIN.subject, role="admin", tags=frozenset({"python"}))
        with pytest.raises(IdempotencyConflictError):  # a narrower scope selects differently
            await h.service.trigger(narrower, "git-status", repos=["alpha"], idempotency_key="once")
        assert (await counts(database))[0] == 1


@pytest.mark.parametrize("key", ["", "x" * (KEY_MAX_LENGTH + 1), "has space", "-leading", "naïve", "a/b"])
async def test_bad_keys_are_argument_errors(database: Database, tmp_path: Path, key: str) -> None:
    async with harness(database, tmp_path) as h:
        with pytest.raises(InvalidArgumentError, match=r"^idempotency_key: must be 1 to 128 characters"):
            await h.service.trigger(ADMIN, "git-status", repos=["alpha"], idempotency_key=key)
    assert await counts(database) == (0, 0)
