"""Two replicas against one: do engines sharing a database share the work (issue 14, item 5)?

Two `LocalEngine`s on one database (each with its own connection pool, as two `serve`
processes have), each with --slots worker threads and `serve`'s default engine settings. A
workflow of --repos runs, each `sleep --seconds` then one line to a ledger file, is triggered
through the first engine's service (a trigger reaches one replica; the other learns of it by
PostgreSQL's NOTIFY, or at its next poll on SQLite), and timed from the call until the
workflow is closed (the close notification of whichever engine closed it). The same workflow
with only the first engine running is the baseline. Rounds alternate one and two engines (the
second started a second before the trigger, as a serving replica would be); medians are
reported, with how many runs each engine executed.

Every round checks that the ledger holds each repository exactly once (no run executed twice)
and that every run succeeded; otherwise the figures are void and the script exits 2.

Floor: two replicas take at most 0.6 x the time of one. Exits 1 when missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from fanout import POSTGRES_URL, make_fleet

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import engine_config
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.local import LocalEngine
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.service import WorkflowService
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics, configure_logging

FLOOR = 0.6
WORKFLOW = "pause"
TIMEOUT_SECONDS = 120.0
SETTLE_SECONDS = 1.0
"""The second engine runs this long before the trigger, as a replica serving already would
(its listener connected, its first polls made)."""


@dataclass(frozen=True)
class Replica:
    db: Database
    engine: LocalEngine
    metrics: Metrics

    def executed(self) -> float:
        """Runs this engine recorded as finished so far (its own metrics registry)."""
        value = self.metrics.registry.get_sample_value(
            "mahavishnu_repo_runs_total", {"workflow": WORKFLOW, "status": "succeeded"}
        )
        return value or 0.0


def replica(settings: MahavishnuSettings) -> Replica:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    metrics = Metrics()
    engine = LocalEngine(
        db, engine_config(settings), settings.workflow_definitions(), WorkflowMetrics(metrics)
    )
    return Replica(db, engine, metrics)


async def timed(service: WorkflowService, engines: Sequence[LocalEngine], ledger: Path, repos: int) -> float:
    """From the trigger until one of `engines` reports the workflow closed (no polling beside the
    engines on this event loop); then checks the ledger."""
    await asyncio.to_thread(ledger.write_text, "")
    started = time.perf_counter()
    summary = await service.trigger(LOCAL_PRINCIPAL, WORKFLOW, tag="bench")
    waits = [asyncio.create_task(engine.until_closed(summary.workflow_id)) for engine in engines]
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    elapsed = time.perf_counter() - started
    view = await service.status(LOCAL_PRINCIPAL, summary.workflow_id, limit=0)
    lines = (await asyncio.to_thread(ledger.read_text)).splitlines()
    if view.counts != {"succeeded": repos} or len(lines) != repos or len(set(lines)) != repos:
        print(
            f"void: {view.counts}, {len(lines)} executions of {len(set(lines))} repositories", file=sys.stderr
        )
        raise SystemExit(2)
    return elapsed


async def measure(
    args: argparse.Namespace, root: Path, fleet: Path
) -> tuple[list[float], list[float], list[str]]:
    schema = f"bench_{uuid.uuid4().hex[:12]}" if args.db == "postgres" else None
    ledger = root / "ledger.txt"
    settings = MahavishnuSettings.load(
        data_dir=root / "var",
        database_url=POSTGRES_URL if args.db == "postgres" else None,
        database_schema=schema,
        allowed_roots=[root],
        max_concurrent_runs=args.slots,
        **({"engine_poll_seconds": args.engine_poll} if args.engine_poll is not None else {}),
        workflows={
            WORKFLOW: {
                "argv": ["sh", "-c", 'sleep "$0" && pwd >> "$1"', str(args.seconds), str(ledger)],
                "description": "Sleeps, then writes its repository to the ledger.",
            }
        },
    )
    first, second = replica(settings), replica(settings)
    await first.db.ensure_schema(upgrade=True)
    store = ManifestStore(fleet, allowed_roots=settings.allowed_roots, roles=settings.roles)
    store.reload_if_changed()
    service = WorkflowService(first.db, store, settings.workflow_definitions(), first.engine)
    ones: list[float] = []
    twos: list[float] = []
    shares: list[str] = []
    try:
        async with first.engine.running():
            for _ in range(args.rounds):
                ones.append(await timed(service, [first.engine], ledger, args.repos))
                async with second.engine.running():
                    await asyncio.sleep(SETTLE_SECONDS)
                    before = first.executed(), second.executed()
                    twos.append(await timed(service, [first.engine, second.engine], ledger, args.repos))
                    shares.append(f"{first.executed() - before[0]:.0f}+{second.executed() - before[1]:.0f}")
                print(
                    f"one {ones[-1]:.3f} s, two {twos[-1]:.3f} s (runs per engine {shares[-1]})", flush=True
                )
    finally:
        await first.db.dispose()
        await second.db.dispose()
        if schema is not None:
            connection = await asyncpg.connect(POSTGRES_URL)
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.close()
    return ones, twos, shares


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=40, help="Repositories in the workflow.")
    parser.add_argument("--seconds", type=float, default=0.3, help="How long each run sleeps.")
    parser.add_argument("--slots", type=int, default=4, help="max_concurrent_runs of each engine.")
    parser.add_argument(
        "--engine-poll", type=float, metavar="SECONDS", help="engine_poll_seconds (default: the setting's)."
    )
    parser.add_argument("--db", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--rounds", type=int, default=3, help="Measurements each way (median reported).")
    args = parser.parse_args(argv)

    os.environ["MAHAVISHNU_CONFIG"] = "/nonexistent/mahavishnu.yaml"  # no settings file from the cwd
    for name in [n for n in os.environ if n.startswith("MAHAVISHNU_") and n != "MAHAVISHNU_CONFIG"]:
        del os.environ[name]
    os.environ.pop("POSTGRES_URL", None)

    with tempfile.TemporaryDirectory(prefix="mahavishnu-replicas-") as tmp:
        root = Path(tmp)
        with (root / "engine.log").open("w") as log:
            configure_logging("INFO", "json", stream=log)
            paths = make_fleet(root, args.repos)
            print(
                f"cpus {os.cpu_count()}, {args.db}, {args.repos} runs of sleep {args.seconds:g} s, "
                f"{args.slots} slots per engine, {args.rounds} rounds",
                flush=True,
            )
            ones, twos, _ = asyncio.run(measure(args, root, paths[0].parent / "repos.yaml"))
    one, two = statistics.median(ones), statistics.median(twos)
    ratio = two / one
    print(
        f"median: one engine {one:.3f} s, two engines {two:.3f} s, ratio {ratio:.2f} (floor <= {FLOOR}): "
        + ("MET" if ratio <= FLOOR else "MISSED")
    )
    return 0 if ratio <= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
