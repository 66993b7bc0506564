"""What the workflow commands share: settings, the service over a current schema, one-line
errors with their exit codes, and the way statuses, times and runs are printed.

Heavy modules (SQLAlchemy, the engine) are imported inside the functions, so `mahavishnu --help`
and the commands that do not need them stay quick to start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rich.table import Table

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.cli_support import err, fail
from mahavishnu.platform.errors import ConfigurationError

if TYPE_CHECKING:
    from mahavishnu.orchestrator.manifest import ManifestStore
    from mahavishnu.orchestrator.workflows.ports import WorkflowEngine
    from mahavishnu.orchestrator.workflows.service import WorkflowService
    from mahavishnu.orchestrator.workflows.views import AttemptView, WorkflowView
    from mahavishnu.platform.db import Database

T = TypeVar("T")


POLL_SECONDS = 0.2
_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "skipped_circuit_open": "yellow",
    "partial": "yellow",
}

# --- plumbing ---------------------------------------------------------------------------


def load_settings() -> MahavishnuSettings:
    """Settings as `mahavishnu serve` builds them. (The main app's callback already sends log
    lines to stderr, so stdout carries only the command's answer: a table or JSON.)"""
    try:
        return MahavishnuSettings.load()
    except ConfigurationError as exc:
        fail(exc.message, 2)


@contextlib.asynccontextmanager
async def database(settings: MahavishnuSettings, *, create: bool = True) -> AsyncIterator[Database]:
    """`create=False` for commands that only read or change what exists: a missing SQLite file is
    then "no database at PATH", never an empty database made behind the user's back."""
    from mahavishnu.platform.db import Database

    db = Database.from_settings(settings, create=create)
    try:
        yield db
    finally:
        await db.dispose()


@dataclass(frozen=True, slots=True)
class Context:
    settings: MahavishnuSettings
    manifest: ManifestStore
    service: WorkflowService
    engine: WorkflowEngine | None
    db: Database


@contextlib.asynccontextmanager
async def open_service(settings: MahavishnuSettings, *, engine: bool = False) -> AsyncIterator[Context]:
    """The workflow service over a current schema (upgraded as at server start-up when allowed),
    with an engine of its own when this command executes runs."""
    from mahavishnu.orchestrator.manifest import ManifestStore
    from mahavishnu.orchestrator.service import build_engine, host_lookup
    from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
    from mahavishnu.orchestrator.workflows.service import WorkflowService
    from mahavishnu.platform.observability import Metrics

    manifest = ManifestStore.from_settings(settings)
    definitions = settings.workflow_definitions()
    async with database(settings, create=engine) as db:
        await db.ensure_schema(upgrade=settings.db_auto_upgrade)
        runner = (
            build_engine(db, settings, WorkflowMetrics(Metrics()), host_of=host_lookup(manifest))
            if engine
            else None
        )
        yield Context(settings, manifest, WorkflowService(db, manifest, definitions, runner), runner, db)


def id_table(id_header: str, *columns: tuple[str, Mapping[str, Any]]) -> Table:
    """A list table led by short IDs, which are never wrapped or cut (a user copies them);
    other columns fold long values unless their options say otherwise."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column(id_header, no_wrap=True)
    for name, options in columns:
        table.add_column(name, **{"overflow": "fold", **options})
    return table


def styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def age(moment: datetime | None) -> str:
    """How long ago, as kubectl shows it in a list (`45s`, `12m`, `3h`, `5d`): narrow enough for
    80 columns; the exact time is in `show` and `--json`."""
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


async def attempts_of(ctx: Context, run_ids: Sequence[str]) -> dict[str, list[AttemptView]]:
    """Every attempt of these runs (got from a scoped read), with output from this machine's logs."""
    from mahavishnu.orchestrator.service import engine_config
    from mahavishnu.orchestrator.workflows.attempt_history import LogPlace, attempts_by_run

    config = engine_config(ctx.settings)
    return await attempts_by_run(ctx.db, run_ids, LogPlace(config.log_dir, config.output_tail_bytes))


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no repo runs"


def more_than_shown(shown: int, total: int) -> None:
    """Under a list cut by --limit: how many there are in all (on stderr, not in the table)."""
    if total > shown:
        err.print(f"{shown} of {total} shown; --limit shows more (up to 200)")


async def until_final(
    service: WorkflowService,
    workflow_id: str,
    stop: asyncio.Event | None,
    progress: Callable[[WorkflowView], None] | None,
) -> WorkflowView:
    """Poll the workflow until it is final, or `stop` is set, then return it with every run.
    Each poll asks for the counts alone, so watching thousands of runs stays cheap."""
    while True:
        view = await service.status(LOCAL_PRINCIPAL, workflow_id, limit=0)
        if progress is not None:
            progress(view)
        if view.finished_at is not None or (stop is not None and stop.is_set()):
            return await service.status(LOCAL_PRINCIPAL, workflow_id)
        if stop is None:
            await asyncio.sleep(POLL_SECONDS)
        else:
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that meets a set event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await stop.wait()
