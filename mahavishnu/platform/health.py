"""Health and readiness: per-component checks rolled up into one status.

A component is `ok`, `degraded` (works with reduced function) or `down`.
The service is `unhealthy` (HTTP 503) only when a *critical* component is
down or it is shutting down; any other problem makes it `degraded` with
HTTP 200, so an orchestrator does not restart a pod that can still serve.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import anyio

__all__ = ["ComponentHealth", "HealthCheck", "HealthReport", "HealthState", "evaluate"]

ComponentStatus = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    status: ComponentStatus
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named probe. `critical` means the service cannot serve without it."""

    name: str
    probe: Callable[[], Awaitable[ComponentHealth]]
    critical: bool = False
    timeout_seconds: float = 2.0


@dataclass
class HealthState:
    """Process-wide facts the checks do not probe: start time, and whether we are draining."""

    started_at: float = field(default_factory=time.time)
    draining: bool = False


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Literal["healthy", "degraded", "unhealthy"]
    components: dict[str, ComponentHealth]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unhealthy" else 200

    def summary(self) -> dict[str, Any]:
        """What anyone may see: the roll-up and each component's status, nothing more."""
        return {
            "status": self.status,
            "checks": {name: {"status": c.status} for name, c in self.components.items()},
        }

    def as_dict(self, *, service: str, version: str, uptime_seconds: float) -> dict[str, Any]:
        return {
            "status": self.status,
            "service": service,
            "version": version,
            "uptime_seconds": round(uptime_seconds, 3),
            "checks": {name: asdict(c) for name, c in self.components.items()},
        }


async def _run(check: HealthCheck) -> ComponentHealth:
    try:
        with anyio.fail_after(check.timeout_seconds):
            return await check.probe()
    except TimeoutError:
        return ComponentHealth("down", f"no answer within {check.timeout_seconds} s")
    except Exception as exc:  # a probe must never take the health endpoint down with it
        return ComponentHealth("down", f"probe failed: {type(exc).__name__}")


async def evaluate(checks: Sequence[HealthCheck], state: HealthState) -> HealthReport:
    results: dict[str, ComponentHealth] = {}

    async def run_one(check: HealthCheck) -> None:
        results[check.name] = await _run(check)

    async with anyio.create_task_group() as tg:
        for check in checks:
            tg.start_soon(run_one, check)
    components = {c.name: results[c.name] for c in checks}
    if state.draining or any(components[c.name].status == "down" for c in checks if c.critical):
        status: Literal["healthy", "degraded", "unhealthy"] = "unhealthy"
    elif any(c.status != "ok" for c in components.values()):
        status = "degraded"
    else:
        status = "healthy"
    return HealthReport(status, components)
