"""Workflow metrics, registered in the platform's registry. Labels are workflow names (bounded:
the operator defines them) and statuses; never a repo, a user or an id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mahavishnu.platform.observability import Metrics

__all__ = ["WorkflowMetrics"]


class WorkflowMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.workflows = Counter(
            "mahavishnu_workflows",
            "Workflows finished, by workflow and final status.",
            ["workflow", "status"],
            registry=r,
        )
        self.repo_runs = Counter(
            "mahavishnu_repo_runs",
            "Repo runs finished, by workflow and final status.",
            ["workflow", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "mahavishnu_repo_run_duration_seconds",
            "Duration of one repo run attempt.",
            ["workflow"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800),
        )
        self.active_runs = Gauge("mahavishnu_active_runs", "Repo runs executing in this process.", registry=r)
        self.queue_depth = Gauge("mahavishnu_queue_depth", "Repo runs waiting to start.", registry=r)
        self.dead_letters = Gauge("mahavishnu_dead_letters", "Dead letters not yet resolved.", registry=r)
        self.circuit_open = Gauge(
            "mahavishnu_circuit_open_repos",
            "Repositories whose circuit breaker is open or half-open.",
            registry=r,
        )
