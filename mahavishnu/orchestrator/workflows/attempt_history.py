"""Every attempt of some repo runs, each with the output it left, for `workflows show` and
`dlq show`.

A run keeps only its latest attempt's output tail in the database; an earlier attempt's output
is the end of its log file (`local/run_logs.py`), which only the machine that ran it has. The
caller passes runs it got from a scoped read (the service), so no scope is applied here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from mahavishnu.orchestrator.workflows.local.run_logs import log_file, read_tail
from mahavishnu.orchestrator.workflows.models import Attempt, RepoRun
from mahavishnu.orchestrator.workflows.views import AttemptView
from mahavishnu.platform.db import Database

__all__ = ["LogPlace", "attempts_by_run"]

_BATCH = 500
"""Run ids per query (SQLite caps the parameters of one statement)."""


@dataclass(frozen=True, slots=True)
class LogPlace:
    """Where this machine keeps run logs, and how much of a log's end counts as its tail."""

    log_dir: Path
    tail_bytes: int


@dataclass(frozen=True, slots=True)
class _Row:
    attempt: Attempt
    workflow_id: str
    latest: int
    latest_tail: str | None


async def attempts_by_run(
    db: Database, run_ids: Sequence[str], logs: LogPlace
) -> dict[str, list[AttemptView]]:
    """Each run id mapped to its recorded attempts, oldest first (an attempt still running has
    no record yet)."""
    rows: list[_Row] = []
    async with db.session() as session:
        for start in range(0, len(run_ids), _BATCH):
            chunk = run_ids[start : start + _BATCH]
            query = (
                select(Attempt, RepoRun.workflow_id, RepoRun.attempt, RepoRun.output_tail)
                .join(RepoRun, RepoRun.id == Attempt.run_id)
                .where(Attempt.run_id.in_(chunk))
                .order_by(Attempt.run_id, Attempt.attempt)
            )
            rows.extend(_Row(*row) for row in (await session.execute(query)).tuples())
    found: dict[str, list[AttemptView]] = {run_id: [] for run_id in run_ids}
    for row, view in zip(rows, await asyncio.to_thread(_with_output, rows, logs), strict=True):
        found[row.attempt.run_id].append(view)
    return found


def _with_output(rows: list[_Row], logs: LogPlace) -> list[AttemptView]:
    """The views, with each attempt's output and log file (file reads: run in a thread)."""
    views = []
    for row in rows:
        path = log_file(logs.log_dir, row.workflow_id, row.attempt.run_id, row.attempt.attempt)
        if row.attempt.attempt == row.latest:
            tail, here = row.latest_tail, path.is_file()
        else:
            tail = read_tail(path, logs.tail_bytes)
            here = tail is not None
        views.append(AttemptView.of(row.attempt, output_tail=tail, log_file=str(path) if here else None))
    return views
