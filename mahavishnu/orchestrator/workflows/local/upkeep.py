"""The local engine's housekeeping against the shared tables: its instance row, finding the dead
engines of this host and healing their runs, and one maintain round (heartbeat, leases, cancels
made elsewhere, gauges, the sweep that closes what every other check missed).

Each call is one short transaction; what to do with the answers (stop runs, report closes, set
gauges) stays with the engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from mahavishnu.orchestrator.workflows import records
from mahavishnu.orchestrator.workflows.local import queue
from mahavishnu.orchestrator.workflows.models import Instance
from mahavishnu.orchestrator.workflows.records import Closed, Gauges
from mahavishnu.platform.db import Database

__all__ = ["Round", "dead_engines", "heartbeat", "maintain_round", "requeue_orphans"]


@dataclass(frozen=True, slots=True)
class Round:
    """What one maintain round learnt."""

    cancelled: set[str]
    """Workflows with runs held here that were cancelled elsewhere."""
    settled: list[Closed]
    gauges: Gauges


def _instance(instance_id: str, started_at: datetime, now: datetime) -> Instance:
    return Instance(
        id=instance_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=started_at,
        heartbeat_at=now,
    )


async def heartbeat(db: Database, instance_id: str, started_at: datetime, now: datetime) -> None:
    """Write (or refresh) this engine's instance row, so healers see it alive."""
    async with db.session() as session:
        await queue.heartbeat(session, _instance(instance_id, started_at, now), now)


async def dead_engines(db: Database, instance_id: str) -> list[str]:
    """Engines of this host, other than this one, whose process is gone."""
    async with db.session() as session:
        found = await queue.instances_on(session, socket.gethostname())
    return [i.id for i in found if i.id != instance_id and not _pid_alive(i.pid)]


async def requeue_orphans(
    db: Database, *, now: datetime, dead: Collection[str], keep: Collection[str], requeue: bool
) -> tuple[int, list[Closed]]:
    """Requeue (or fail) runs of `dead` engines and of expired leases, except `keep` (held here),
    and forget the dead engines; returns how many runs and the workflows that closed."""
    async with db.session() as session:
        healed, closed = await queue.heal_orphans(
            session, now=now, dead_owners=dead, keep=keep, requeue=requeue
        )
        await queue.forget_instances(session, dead)
    return healed, closed


async def maintain_round(
    db: Database,
    *,
    instance_id: str,
    started_at: datetime,
    now: datetime,
    held: Collection[records.Claimed],
    lease_seconds: float,
) -> Round:
    """Heartbeat, renew the leases of `held` runs, and read cancels, gauges and settled workflows."""
    async with db.session() as session:
        await queue.heartbeat(session, _instance(instance_id, started_at, now), now)
        await queue.renew_leases(
            session, run_ids=[run.run_id for run in held], lease_until=now + timedelta(seconds=lease_seconds)
        )
        cancelled = await records.cancelled_among(session, {run.workflow_id for run in held})
        gauges = await records.gauges(session)
        settled = await records.close_settled_workflows(session, now)
    return Round(cancelled, settled, gauges)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
