"""`mahavishnu run | workflows | dlq | db`: workflows from the command line, without a server.

`run` (and `dlq retry --wait`) start a LocalEngine inside the CLI process. The
engine claims runs atomically, so it shares a database with a running server
safely; the command works with no server at all. The CLI acts as the local
admin (LOCAL_PRINCIPAL): whoever can run it can already read the database.

Exit codes: 0 success; 1 a repo run did not succeed, the database is
unavailable, or its schema is not current (`db status`); 2 bad input or
unusable settings; 128 + N when stopped by signal N (the workflow is cancelled).

Heavy modules (SQLAlchemy, the engine) are imported inside the commands so
`mahavishnu --help` and the other sub-commands stay quick to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.errors import ConfigurationError, MahavishnuError, UnavailableError

if TYPE_CHECKING:
    from mahavishnu.orchestrator.manifest import ManifestStore
    from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
    from mahavishnu.orchestrator.workflows.engine import LocalEngine
    from mahavishnu.orchestrator.workflows.service import WorkflowService
    from mahavishnu.orchestrator.workflows.views import (
        DeadLetterView,
        RunView,
        WorkflowSummary,
        WorkflowView,
    )
    from mahavishnu.platform.db import Database

__all__ = ["db_app", "dlq_app", "run_command", "workflows_app"]

T = TypeVar("T")

workflows_app = typer.Typer(help="List, inspect and cancel workflows.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="The dead-letter queue: repo runs that used up their retries.", no_args_is_help=True
)
db_app = typer.Typer(help="The workflow database and its schema.", no_args_is_help=True)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)

POLL_SECONDS = 0.2
PLAIN_PROGRESS_SECONDS = 1.0
"""Without a terminal, progress is a line at most this often (logs and CI stay readable)."""
CANCEL_WAIT_EXTRA_SECONDS = 10.0
"""After a cancel, how long past the kill grace to wait for the runs to be recorded as final."""
_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "skipped_circuit_open": "yellow",
    "partial": "yellow",
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


# --- plumbing ---------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _load() -> MahavishnuSettings:
    """Settings as `mahavishnu serve` builds them. (The main app's callback already sends log
    lines to stderr, so stdout carries only the command's answer: a table or JSON.)"""
    try:
        return MahavishnuSettings.load()
    except ConfigurationError as exc:
        _fail(exc.message, 2)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's async body; a failure the caller can act on is one line, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(coro)
    except UnavailableError as exc:
        _fail(exc.message, 1)
    except MahavishnuError as exc:
        _fail(exc.message, 2)
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"the database is unavailable: {_first_line(str(exc))}", 1)


@contextlib.asynccontextmanager
async def _database(settings: MahavishnuSettings) -> AsyncIterator[Database]:
    from mahavishnu.platform.db import Database

    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        yield db
    finally:
        await db.dispose()


@dataclass(frozen=True, slots=True)
class _Context:
    settings: MahavishnuSettings
    manifest: ManifestStore
    service: WorkflowService
    engine: LocalEngine | None


@contextlib.asynccontextmanager
async def _open(settings: MahavishnuSettings, *, engine: bool = False) -> AsyncIterator[_Context]:
    """The workflow service over a current schema (upgraded as at server start-up when allowed),
    with an engine of its own when this command executes runs."""
    from mahavishnu.orchestrator.manifest import ManifestStore
    from mahavishnu.orchestrator.service import engine_config
    from mahavishnu.orchestrator.workflows.engine import LocalEngine
    from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
    from mahavishnu.orchestrator.workflows.service import WorkflowService
    from mahavishnu.platform.observability import Metrics

    manifest = ManifestStore.from_settings(settings)
    definitions = settings.workflow_definitions()
    async with _database(settings) as db:
        await db.ensure_schema(upgrade=settings.db_auto_upgrade)
        local = (
            LocalEngine(db, engine_config(settings), definitions, WorkflowMetrics(Metrics()))
            if engine
            else None
        )
        yield _Context(settings, manifest, WorkflowService(db, manifest, definitions, local), local)


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no repo runs"


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


# --- run ----------------------------------------------------------------------------------


def _parse_params(pairs: list[str], definition: WorkflowDefinition | None) -> dict[str, Any]:
    """NAME=VALUE pairs, typed by the workflow's declared parameters.

    Values the type cannot take are passed on as given, so the service reports them with
    the same message an MCP client gets.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"--param {pair!r} is not NAME=VALUE", 2)
        name = name.strip()
        spec = definition.params.get(name) if definition else None
        typed: Any = value
        if spec is not None and spec.type == "integer":
            with contextlib.suppress(ValueError):
                typed = int(value)
        elif spec is not None and spec.type == "boolean" and value.lower() in _TRUE | _FALSE:
            typed = value.lower() in _TRUE
        params[name] = typed
    return params


class _Progress:
    """A progress bar on a terminal; otherwise a line now and then (and none at all for --json)."""

    def __init__(self, view: WorkflowView, *, quiet: bool) -> None:
        self._total = len(view.runs)
        self._live = err.is_terminal
        self._quiet = quiet and not self._live
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self._task = self._bar.add_task(escape(view.workflow), total=self._total, counts="")
        self._shown = -1
        self._shown_at = 0.0

    def __enter__(self) -> _Progress:
        if self._live:
            self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live:
            self._bar.stop()

    def update(self, view: WorkflowView) -> None:
        done = view.done
        if self._live:
            self._bar.update(self._task, completed=done, counts=_counts(view.counts))
            return
        now = time.monotonic()
        final = view.finished_at is not None
        if (
            self._quiet
            or done == self._shown
            or (now - self._shown_at < PLAIN_PROGRESS_SECONDS and not final)
        ):
            return
        self._shown, self._shown_at = done, now
        err.print(f"{done}/{self._total} final: {_counts(view.counts)}")


class _Signals:
    """SIGINT/SIGTERM become a request to cancel the workflow, not an abrupt exit."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.received: int | None = None

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on, sig)
        return self

    def __exit__(self, *_: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def _on(self, sig: int) -> None:
        if self.received is None:
            self.received = sig
        self.event.set()


async def _until_final(
    service: WorkflowService, workflow_id: str, stop: asyncio.Event | None, progress: _Progress | None
) -> WorkflowView:
    """Poll the workflow until it is final, or `stop` is set."""
    while True:
        view = await service.status(LOCAL_PRINCIPAL, workflow_id)
        if progress is not None:
            progress.update(view)
        if view.finished_at is not None or (stop is not None and stop.is_set()):
            return view
        if stop is None:
            await asyncio.sleep(POLL_SECONDS)
        else:
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that meets a set event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await stop.wait()


@dataclass(frozen=True, slots=True)
class _Outcome:
    view: WorkflowView
    signal: int | None


async def _run_workflow(
    settings: MahavishnuSettings,
    workflow: str,
    *,
    tag: str | None,
    role: str | None,
    repos: list[str] | None,
    params: dict[str, Any],
    quiet: bool,
) -> _Outcome:
    from mahavishnu.orchestrator.manifest import INIT_HINT, ManifestError

    async with _open(settings, engine=True) as ctx:
        assert ctx.engine is not None
        ctx.manifest.reload_if_changed()
        if ctx.manifest.problems:
            raise ManifestError(ctx.manifest.problems)
        if not ctx.manifest.exists:
            raise ConfigurationError(f"no repository manifest at {ctx.manifest.path}; {INIT_HINT}")
        summary = await ctx.service.trigger(
            LOCAL_PRINCIPAL, workflow, tag=tag, role=role, repos=repos, params=params
        )
        queued = await ctx.service.status(LOCAL_PRINCIPAL, summary.workflow_id)
        err.print(f"workflow {summary.workflow_id} ({escape(workflow)}): {len(queued.runs)} repo runs queued")
        async with ctx.engine.running(workflows={summary.workflow_id}):
            with _Signals() as signals, _Progress(queued, quiet=quiet) as progress:
                view = await _until_final(ctx.service, summary.workflow_id, signals.event, progress)
                if view.finished_at is None:
                    err.print(f"interrupted: cancelling workflow {summary.workflow_id}")
                    await ctx.service.cancel(LOCAL_PRINCIPAL, summary.workflow_id)
                    # Keep the engine running until its killed runs are recorded as cancelled.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            _until_final(ctx.service, summary.workflow_id, None, progress),
                            settings.kill_grace_seconds + CANCEL_WAIT_EXTRA_SECONDS,
                        )
                    view = await ctx.service.status(LOCAL_PRINCIPAL, summary.workflow_id)
        return _Outcome(view, signals.received)


def _runs_table(runs: list[RunView]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column, justify in (
        ("repo", "left"),
        ("status", "left"),
        ("attempt", "right"),
        ("exit code", "right"),
        ("duration", "right"),
        ("error / output", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for run in runs:
        table.add_row(
            escape(run.repo),
            _styled(run.status),
            str(run.attempt),
            "-" if run.exit_code is None else str(run.exit_code),
            "-" if run.duration_seconds is None else f"{run.duration_seconds:.2f}s",
            escape(_first_line(run.error) or _first_line(run.output_tail)),
        )
    return table


def _print_view(view: WorkflowView) -> None:
    out.print(_runs_table(view.runs))
    name = escape(view.workflow)
    out.print(f"workflow {view.workflow_id} ({name}): {_styled(view.status)} · {_counts(view.counts)}")


def run_command(
    workflow: Annotated[str, typer.Argument(help="The workflow to run, as named in the settings.")],
    tag: Annotated[str | None, typer.Option(help="Only repositories with this tag.")] = None,
    role: Annotated[str | None, typer.Option(help="Only repositories with this role.")] = None,
    repo: Annotated[
        list[str] | None, typer.Option("--repo", help="Only this repository (repeat for more).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A workflow parameter as NAME=VALUE (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")] = False,
) -> None:
    """Run a workflow across repositories here, showing progress until every repo run is final.

    Exits 1 when any repository did not succeed. Ctrl-C cancels the workflow.
    """
    settings = _load()
    params = _parse_params(param or [], settings.workflow_definitions().get(workflow))
    outcome = _run(
        _run_workflow(settings, workflow, tag=tag, role=role, repos=repo, params=params, quiet=as_json)
    )
    if as_json:
        typer.echo(outcome.view.model_dump_json(indent=2))
    else:
        _print_view(outcome.view)
    if outcome.signal is not None:
        raise typer.Exit(128 + outcome.signal)
    if any(run.status != "succeeded" for run in outcome.view.runs):
        raise typer.Exit(1)


# --- workflows ----------------------------------------------------------------------------


@workflows_app.command("list")
def workflows_list(
    status: Annotated[str | None, typer.Option(help="Only workflows with this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only workflows of this name.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only workflows created since (ISO 8601, e.g. 2026-11-27T00:00Z).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List workflows, newest first."""
    settings = _load()

    async def body() -> list[WorkflowSummary]:
        async with _open(settings) as ctx:
            page = await ctx.service.list(
                LOCAL_PRINCIPAL, status=status, workflow=workflow, since=since, limit=limit
            )
        return page.workflows

    rows = _run(body())
    if as_json:
        _print_json([row.model_dump(mode="json") for row in rows])
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "workflow", "status", "requested by", "created", "finished"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.workflow_id,
            escape(row.workflow),
            _styled(row.status),
            escape(row.requested_by),
            _when(row.created_at),
            _when(row.finished_at),
        )
    out.print(table if rows else "no workflows")


@workflows_app.command("show")
def workflows_show(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="The workflow id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a workflow and each of its repo runs."""
    settings = _load()

    async def body() -> WorkflowView:
        async with _open(settings) as ctx:
            return await ctx.service.status(LOCAL_PRINCIPAL, workflow_id)

    view = _run(body())
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    params = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(view.params.items())) or "-"
    for label, value in (
        ("workflow", escape(view.workflow)),
        ("status", _styled(view.status)),
        ("requested by", escape(view.requested_by)),
        ("params", escape(params)),
        ("created", _when(view.created_at)),
        ("started", _when(view.started_at)),
        ("finished", _when(view.finished_at)),
    ):
        out.print(f"{label + ':':14}{value}")
    out.print()
    _print_view(view)


@workflows_app.command("cancel")
def workflows_cancel(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="The workflow id.")],
) -> None:
    """Cancel a workflow: queued runs stop now, running ones within seconds (wherever they run)."""
    settings = _load()

    async def body() -> WorkflowView:
        async with _open(settings) as ctx:
            return await ctx.service.cancel(LOCAL_PRINCIPAL, workflow_id)

    view = _run(body())
    note = "" if view.finished_at else " (running repo runs are being stopped)"
    out.print(f"workflow {view.workflow_id}: {_styled(view.status)} · {_counts(view.counts)}{note}")


# --- dead letters ---------------------------------------------------------------------------


def _dead_letter_lines(entry: DeadLetterView) -> list[tuple[str, str]]:
    argv = entry.inputs.get("argv")
    return [
        ("id", entry.dead_letter_id),
        ("status", _styled(entry.status)),
        ("workflow", f"{escape(entry.workflow)} ({entry.workflow_id})"),
        ("repo", escape(entry.repo)),
        ("path", escape(str(entry.inputs.get("repo_path", "-")))),
        ("command", escape(shlex.join(argv)) if isinstance(argv, list) else "-"),
        ("attempts", str(entry.attempts)),
        ("retries", str(entry.retries)),
        ("created", _when(entry.created_at)),
        ("updated", _when(entry.updated_at)),
        ("last error", escape(entry.last_error or "-")),
    ]


@dlq_app.command("list")
def dlq_list(
    include_resolved: Annotated[bool, typer.Option("--all", help="Include resolved entries.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters (open and retrying; --all adds resolved ones), newest first."""
    settings = _load()

    async def body() -> list[DeadLetterView]:
        async with _open(settings) as ctx:
            page = await ctx.service.dead_letters(LOCAL_PRINCIPAL, include_resolved=include_resolved)
        return page.dead_letters

    entries = _run(body())
    if as_json:
        _print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "workflow", "repo", "status", "attempts", "retries", "updated", "last error"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.dead_letter_id,
            escape(e.workflow),
            escape(e.repo),
            _styled(e.status),
            str(e.attempts),
            str(e.retries),
            _when(e.updated_at),
            escape(_first_line(e.last_error)),
        )
    out.print(table if entries else "no dead letters")


@dlq_app.command("show")
def dlq_show(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one dead letter: its inputs, attempts and last error."""
    settings = _load()

    async def body() -> DeadLetterView:
        async with _open(settings) as ctx:
            return await ctx.service.dead_letter(LOCAL_PRINCIPAL, dead_letter_id)

    entry = _run(body())
    if as_json:
        typer.echo(entry.model_dump_json(indent=2))
        return
    for label, value in _dead_letter_lines(entry):
        out.print(f"{label + ':':12}{value}")


async def _retry(settings: MahavishnuSettings, dead_letter_id: str, *, wait: bool) -> DeadLetterView:
    async with _open(settings, engine=wait) as ctx:
        entry = await ctx.service.retry_dead_letter(LOCAL_PRINCIPAL, dead_letter_id)
        if ctx.engine is None:
            return entry
        async with ctx.engine.running(workflows={entry.workflow_id}):
            # The workflow closes once the run is final, whatever the outcome (cancelled included).
            await _until_final(ctx.service, entry.workflow_id, None, None)
        return await ctx.service.dead_letter(LOCAL_PRINCIPAL, dead_letter_id)


@dlq_app.command("retry")
def dlq_retry(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter id.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Run the retry here and wait for it; exit 1 unless it succeeds.")
    ] = False,
) -> None:
    """Queue a dead letter's run again, as one more attempt of its workflow.

    The entry leaves the queue only when that attempt succeeds. Without --wait a running
    engine (`mahavishnu serve`, or the next `mahavishnu run`) executes it.
    """
    settings = _load()
    entry = _run(_retry(settings, dead_letter_id, wait=wait))
    if not wait:
        out.print(f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): queued for retry")
        return
    if entry.status == "resolved":
        out.print(f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): [green]resolved[/green]")
        return
    detail = escape(_first_line(entry.last_error) or "the retry did not finish")
    out.print(
        f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): {_styled(entry.status)} · {detail}"
    )
    raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    everything: Annotated[
        bool, typer.Option("--all", help="Also delete open entries (not ones being retried).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete resolved dead letters; with --all, open ones too (asks first unless --yes)."""
    settings = _load()
    if everything and not yes:
        if not sys.stdin.isatty():
            _fail("--all deletes open dead letters; pass --yes to confirm without a terminal", 2)
        typer.confirm("Delete every open and resolved dead letter?", abort=True)

    async def body() -> int:
        async with _open(settings) as ctx:
            return await ctx.service.purge_dead_letters(LOCAL_PRINCIPAL, resolved_only=not everything)

    out.print(f"purged {_run(body())} dead letter(s)")


# --- database -------------------------------------------------------------------------------


def _describe(settings: MahavishnuSettings) -> str:
    from mahavishnu.platform.settings import mask_url

    schema = f" (schema {settings.database_schema})" if settings.database_schema else ""
    return f"{mask_url(settings.effective_database_url)}{schema}"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema to the version this code needs (refuses a newer one)."""
    settings = _load()

    async def body() -> tuple[str | None, str]:
        async with _database(settings) as db:
            before = await db.schema_state()
            after = await db.ensure_schema(upgrade=True)
        return before.current, after.head

    before, head = _run(body())
    out.print(f"database: {escape(_describe(settings))}")
    if before == head:
        out.print(f"already at revision {head} (head)")
    else:
        out.print(f"upgraded from {before or 'an empty database'} to revision {head} (head)")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="The revision to step back to, e.g. 0002 (or: -- -1).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Step the schema back to an older revision, before rolling back to the release that needs
    it (what a later revision added is dropped)."""
    settings = _load()
    if not yes:
        if not sys.stdin.isatty():
            _fail("a downgrade drops what later revisions added; pass --yes to confirm", 2)
        typer.confirm(f"Downgrade the schema to {revision}?", abort=True)

    async def body() -> tuple[str | None, str | None]:
        async with _database(settings) as db:
            before = (await db.schema_state()).current
            await db.downgrade(revision)
            return before, (await db.schema_state()).current

    before, after = _run(body())
    out.print(f"database: {escape(_describe(settings))}")
    out.print(f"downgraded from {before} to revision {after or 'none (empty schema)'}")


@db_app.command("status")
def db_status() -> None:
    """Print the schema revision in the database and the one this code needs; exit 1 if they differ."""
    settings = _load()

    async def body() -> tuple[str | None, str, str | None]:
        async with _database(settings) as db:
            state = await db.schema_state()
            try:
                await db.ensure_schema(upgrade=False)  # says why a schema that is not current is refused
            except ConfigurationError as exc:
                return state.current, state.head, exc.message
        return state.current, state.head, None

    current, head, problem = _run(body())
    out.print(f"database: {escape(_describe(settings))}")
    out.print(f"current:  {current or 'none (empty database)'}")
    out.print(f"head:     {head}")
    if problem is None:
        out.print("[green]up to date[/green]")
        return
    out.print(f"[yellow]not current[/yellow]: {escape(problem)}")
    raise typer.Exit(1)
