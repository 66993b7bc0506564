"""Workflow outcomes as a Mahavishnu sends them to `/ingest/outcomes`, and what Akosha stored of
them (read from its database, SQLite or PostgreSQL, as the server left it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from mahavishnu.akosha.models import WorkflowOutcome
from mahavishnu.akosha.route import OUTCOMES_PATH
from mahavishnu.akosha.settings import MIGRATIONS
from mahavishnu.platform.db import Database
from tests.akosha.conftest import TOKEN, Akosha
from tests.conftest import PG_URL

Stored = dict[tuple[str, str], tuple[str, int, float | None]]
"""(workflow_id, repo) → status, attempts, duration_seconds."""


def outcome(
    repo: str,
    status: str = "succeeded",
    *,
    workflow_id: str = "wf-1",
    attempts: int = 1,
    duration: float | None = 1.5,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "workflow": "test",
        "repo": repo,
        "status": status,
        "attempts": attempts,
        "duration_seconds": duration,
        "finished_at": (finished_at or datetime(2026, 12, 1, 12, tzinfo=UTC)).isoformat(),
    }


def post_outcomes(
    akosha: Akosha, source: str, outcomes: Sequence[dict[str, Any]] | bytes, token: str | None = TOKEN
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = outcomes if isinstance(outcomes, bytes) else json.dumps({"source": source, "outcomes": outcomes})
    return httpx.post(f"{akosha.server.base}{OUTCOMES_PATH}", content=body, headers=headers, timeout=30)


def database_of(akosha: Akosha) -> Database:
    if akosha.schema is None:
        return Database(f"sqlite:///{akosha.folder / 'akosha.db'}", migrations=MIGRATIONS)
    return Database(PG_URL, schema=akosha.schema, migrations=MIGRATIONS)


async def stored_outcomes(akosha: Akosha, source: str) -> Stored:
    db = database_of(akosha)
    try:
        async with db.session() as session:
            rows = await session.scalars(select(WorkflowOutcome).where(WorkflowOutcome.source == source))
            return {(r.workflow_id, r.repo): (r.status, r.attempts, r.duration_seconds) for r in rows}
    finally:
        await db.dispose()
