"""Taking in a Mahavishnu's workflow outcomes (`POST /ingest/outcomes`): one row per (source,
workflow, repository), moved only forward, in one transaction per batch.

"Forward" is a later `finished_at`: a workflow closes again when a dead letter of it is retried,
and its repository's row then tells the retry's ending; a replayed batch, or an older close
arriving after a newer one, changes nothing. As for memories (`ingest.py`), the database enforces
it (`INSERT ... ON CONFLICT DO UPDATE ... WHERE newer`), and the answer comes after the commit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.models import WorkflowOutcome
from mahavishnu.akosha.views import IngestResult
from mahavishnu.akosha.wire import OutcomeBatch, WorkflowRun, check_size
from mahavishnu.platform import Database, get_logger

__all__ = ["ROWS_PER_STATEMENT", "OutcomeInbox"]

log = get_logger("akosha.outcomes")

ROWS_PER_STATEMENT = 500
"""Rows per INSERT: 9 parameters each stays far below SQLite's and asyncpg's 32,767."""
_UPDATED = ("workflow", "status", "attempts", "duration_seconds", "finished_at", "received_at")


class OutcomeInbox:
    def __init__(self, db: Database, metrics: IngestMetrics, *, max_records: int) -> None:
        self._db = db
        self._metrics = metrics
        self._max_records = max_records

    async def take(self, batch: OutcomeBatch) -> IngestResult:
        """Store `batch.source`'s outcomes; answers once they are committed. InvalidArgumentError
        says what is wrong with a batch, before anything is stored."""
        check_size("outcomes", batch.outcomes, self._max_records)
        now = datetime.now(UTC)
        rows = [_row(batch.source, outcome, now) for outcome in _latest(batch.outcomes)]
        accepted = 0
        with self._metrics.duration.time():
            async with self._db.session() as session:
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    accepted += await _forward(
                        session, self._db.dialect, rows[start : start + ROWS_PER_STATEMENT]
                    )
        unchanged = len(batch.outcomes) - accepted
        self._metrics.records.labels("outcome", "accepted").inc(accepted)
        self._metrics.records.labels("outcome", "unchanged").inc(unchanged)
        log.info("outcomes_ingested", source=batch.source, accepted=accepted, unchanged=unchanged)
        return IngestResult(accepted=accepted, unchanged=unchanged)


def _latest(outcomes: list[WorkflowRun]) -> list[WorkflowRun]:
    """The latest outcome of each (workflow, repository) in the batch (one statement may touch
    a row once)."""
    latest: dict[tuple[str, str], WorkflowRun] = {}
    for outcome in outcomes:
        key = (outcome.workflow_id, outcome.repo)
        if key not in latest or outcome.finished_at > latest[key].finished_at:
            latest[key] = outcome
    return list(latest.values())


def _row(source: str, outcome: WorkflowRun, now: datetime) -> dict[str, Any]:
    return {"source": source, **outcome.model_dump(), "received_at": now}


async def _forward(session: AsyncSession, dialect: str, rows: list[dict[str, Any]]) -> int:
    """Insert the rows, or move existing ones to a later close; answers how many it wrote."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = insert(WorkflowOutcome).values(rows)
    sent = values.excluded
    statement = values.on_conflict_do_update(
        index_elements=[WorkflowOutcome.source, WorkflowOutcome.workflow_id, WorkflowOutcome.repo],
        set_={name: sent[name] for name in _UPDATED},
        where=sent.finished_at > WorkflowOutcome.finished_at,
    ).returning(WorkflowOutcome.repo)
    return len((await session.execute(statement)).all())
