"""Shaping search hits and statistics from the rows `reads.py` returns."""

from __future__ import annotations

import math

from mahavishnu.orchestrator.workflows.models import RepoRun
from mahavishnu.orchestrator.workflows.views import DurationStats, SearchHit, WorkflowStats

__all__ = ["hit", "workflow_stats"]


def workflow_stats(
    counts: list[tuple[str, str, int]], durations: list[tuple[str, str, float | None]]
) -> list[WorkflowStats]:
    """Per workflow name: workflows by status, runs by status and run-duration percentiles."""
    names = sorted({n for n, _, _ in counts} | {n for n, _, _ in durations})
    stats = []
    for name in names:
        runs_by_status: dict[str, int] = {}
        seconds = []
        for n, s, d in durations:
            if n == name:
                runs_by_status[s] = runs_by_status.get(s, 0) + 1
                if d is not None:
                    seconds.append(d)
        stats.append(
            WorkflowStats(
                workflow=name,
                workflows_by_status={s: c for n, s, c in counts if n == name},
                repo_runs_by_status=runs_by_status,
                run_duration_seconds=_percentiles(seconds),
            )
        )
    return stats


def _percentiles(values: list[float]) -> DurationStats:
    if not values:
        return DurationStats(p50=None, p95=None, p99=None)
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 4)

    return DurationStats(p50=pick(0.50), p95=pick(0.95), p99=pick(0.99))


def hit(run: RepoRun, query: str) -> SearchHit:
    return SearchHit(
        workflow_id=run.workflow_id,
        workflow=run.workflow_name,
        repo=run.repo,
        status=run.status,
        excerpt=_excerpt(f"{run.error or ''}\n{run.output_tail or ''}", query),
    )


def _excerpt(text: str, query: str, width: int = 160) -> str:
    lowered = text.lower()
    positions = [lowered.find(word.lower()) for word in query.split()]
    found = [p for p in positions if p >= 0]
    start = max(0, (min(found) if found else 0) - width // 4)
    return text[start : start + width].strip()
