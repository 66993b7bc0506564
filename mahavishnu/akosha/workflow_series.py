"""The workflow metrics: what Mahavishnu's outcomes (`akosha_outcomes`) say per bucket, by the
time each repository's run finished, grouped by source, repository or workflow.

Only the outcomes of sources in the caller's scope are read (a token's tags name its sources),
so every series is scoped, as the memory metrics are. The rows are plain columns: no document
is opened, and only the window's rows are read (by the index on `finished_at`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from mahavishnu.akosha.models import WorkflowOutcome
from mahavishnu.akosha.scope import readable_sources
from mahavishnu.akosha.series import ALL, Collector, Grid, MetricSpec, Store, bucket_totals
from mahavishnu.platform import Principal

__all__ = ["FAILED", "WORKFLOW_METRICS"]

FAILED = frozenset({"failed", "timed_out"})
"""The run statuses that count as failures (a cancelled or skipped run did not fail)."""
GROUPS = ("source", "repo", "workflow")
READ_CHUNK = 1000

Series = dict[str, npt.NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class _Run:
    group: str
    bucket: int
    status: str
    attempts: int
    duration: float | None


async def _runs(store: Store, principal: Principal, on: Grid, by: str) -> list[_Run]:
    """The outcomes in scope that finished within the grid, each named by its group."""
    columns = (
        WorkflowOutcome.source,
        WorkflowOutcome.repo,
        WorkflowOutcome.workflow,
        WorkflowOutcome.status,
        WorkflowOutcome.attempts,
        WorkflowOutcome.duration_seconds,
        WorkflowOutcome.finished_at,
    )
    query = select(*columns).where(
        WorkflowOutcome.finished_at >= on.start, WorkflowOutcome.finished_at < on.end
    )
    sources = readable_sources(principal)
    if sources is not None:
        query = query.where(WorkflowOutcome.source.in_(sorted(sources)))
    found: list[_Run] = []
    async with store.db.session() as session:
        result = await session.stream(query.execution_options(yield_per=READ_CHUNK))
        async for source, repo, workflow, status, attempts, duration, finished_at in result:
            bucket = on.index(finished_at)
            if bucket is not None:
                group = {"source": source, "repo": repo, "workflow": workflow}.get(by, ALL)
                found.append(_Run(group, bucket, status, attempts, duration))
    return found


def _summed(value: Callable[[_Run], float]) -> Collector:
    """A collector adding up `value` of each run per group and bucket."""

    async def collect(store: Store, principal: Principal, on: Grid, by: str) -> Series:
        totals: dict[tuple[str, int], float] = {}
        for run in await _runs(store, principal, on, by):
            key = (run.group, run.bucket)
            totals[key] = totals.get(key, 0.0) + value(run)
        return bucket_totals(on, by, totals)

    return collect


async def _median_duration(store: Store, principal: Principal, on: Grid, by: str) -> Series:
    durations: dict[tuple[str, int], list[float]] = {}
    for run in await _runs(store, principal, on, by):
        if run.duration is not None:
            durations.setdefault((run.group, run.bucket), []).append(run.duration)
    return bucket_totals(on, by, {key: statistics.median(values) for key, values in durations.items()})


WORKFLOW_METRICS = (
    MetricSpec(
        "workflow_runs",
        "Repository runs of Mahavishnu's workflows that finished in the bucket (any status).",
        GROUPS,
        _summed(lambda run: 1.0),
    ),
    MetricSpec(
        "workflow_failures",
        "Repository runs that ended failed or timed out, by when they finished.",
        GROUPS,
        _summed(lambda run: 1.0 if run.status in FAILED else 0.0),
    ),
    MetricSpec(
        "workflow_retries",
        "Retries the runs that finished in the bucket needed (attempts beyond the first).",
        GROUPS,
        _summed(lambda run: float(max(run.attempts - 1, 0))),
    ),
    MetricSpec(
        "workflow_duration",
        "Median seconds the runs that finished in the bucket ran (their attempts summed); 0 where none ran.",
        GROUPS,
        _median_duration,
        counts=False,
    ),
)
