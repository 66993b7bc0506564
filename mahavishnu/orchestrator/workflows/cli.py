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

`workflows` and `db` are here; `run` is in `cli_run.py`, `dlq` in `cli_dlq.py`, and what they
share (settings, the service, errors, printing) in `cli_common.py`.
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli_common import (
    age,
    attempts_of,
    counts_text,
    database,
    id_table,
    load_settings,
    more_than_shown,
    open_service,
    styled,
    took,
    when,
)
from mahavishnu.orchestrator.workflows.cli_dlq import dlq_app
from mahavishnu.orchestrator.workflows.cli_output import print_attempts, print_view
from mahavishnu.orchestrator.workflows.cli_run import run_command
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.cli_support import fail, out, print_json, run_sync
from mahavishnu.platform.errors import ConfigurationError

if TYPE_CHECKING:
    from mahavishnu.orchestrator.workflows.pages import WorkflowList
    from mahavishnu.orchestrator.workflows.views import AttemptView, WorkflowView

__all__ = ["db_app", "dlq_app", "run_command", "workflows_app"]

workflows_app = typer.Typer(help="List, inspect and cancel workflows.", no_args_is_help=True)
db_app = typer.Typer(help="The workflow database and its schema.", no_args_is_help=True)
WorkflowId = Annotated[
    str, typer.Argument(metavar="ID", help="The workflow ID, or any unique prefix of it (4+ characters).")
]


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
    """List workflows, newest first, each by its short ID (any unique prefix of an ID works)."""
    settings = load_settings()

    async def body() -> tuple[WorkflowList, dict[str, str]]:
        async with open_service(settings) as ctx:
            page = await ctx.service.list(
                LOCAL_PRINCIPAL, status=status, workflow=workflow, since=since, limit=limit
            )
            ids = [row.workflow_id for row in page.workflows]
            return page, await ctx.service.short_workflow_ids(LOCAL_PRINCIPAL, ids)

    page, short = run_sync(body())
    rows = page.workflows
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    table = id_table("id", ("workflow", {}), ("status", {"no_wrap": True}), ("by", {}), *_TIMES)
    for row in rows:
        table.add_row(
            short.get(row.workflow_id, row.workflow_id),
            escape(row.workflow),
            styled(row.status),
            escape(row.requested_by),
            age(row.created_at),
            took(row.created_at, row.finished_at),
        )
    out.print(table if rows else "no workflows")
    more_than_shown(len(rows), page.total)


_TIMES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("age", {"justify": "right", "no_wrap": True}),
    ("took", {"justify": "right", "no_wrap": True}),
)


@workflows_app.command("show")
def workflows_show(
    workflow_id: WorkflowId,
    status: Annotated[str | None, typer.Option(help="Only runs with this status (e.g. failed).")] = None,
    repo: Annotated[
        list[str] | None, typer.Option("--repo", help="Only the run in this repository (repeat for more).")
    ] = None,
    output: Annotated[
        bool, typer.Option("--output", help="Show the last output lines of every run, not only failed ones.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (each run with its attempt_history).")
    ] = False,
) -> None:
    """Show a workflow, its repo runs, and every attempt of each: exit code, duration, output.

    --status and --repo narrow the runs shown (the counts stay those of the whole workflow).
    """
    settings = load_settings()

    async def body() -> tuple[WorkflowView, str, dict[str, list[AttemptView]]]:
        async with open_service(settings) as ctx:
            view = await ctx.service.status(LOCAL_PRINCIPAL, workflow_id, run_status=status)
            if repo:
                view.runs = [run for run in view.runs if run.repo in repo]
            short = await ctx.service.short_workflow_ids(LOCAL_PRINCIPAL, [view.workflow_id])
            attempts = await attempts_of(ctx, [run.run_id for run in view.runs])
        return view, short.get(view.workflow_id, view.workflow_id), attempts

    view, short_id, attempts = run_sync(body())
    if as_json:
        data = view.model_dump(mode="json")
        for run in data["runs"]:
            history = attempts.get(run["run_id"], [])
            run["attempt_history"] = [a.model_dump(mode="json") for a in history]
        print_json(data)
        return
    params = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(view.params.items())) or "-"
    for label, value in (
        ("id", view.workflow_id),
        ("workflow", escape(view.workflow)),
        ("status", styled(view.status)),
        ("requested by", escape(view.requested_by)),
        ("params", escape(params)),
        ("created", when(view.created_at)),
        ("started", when(view.started_at)),
        ("finished", when(view.finished_at)),
    ):
        out.print(f"{label + ':':14}{value}")
    out.print()
    print_view(view, short_id, output=output)
    print_attempts(view.runs, attempts)


@workflows_app.command("cancel")
def workflows_cancel(
    workflow_id: WorkflowId,
) -> None:
    """Cancel a workflow: queued runs stop now, running ones within seconds (wherever they run)."""
    settings = load_settings()

    async def body() -> tuple[WorkflowView, str]:
        async with open_service(settings) as ctx:
            view = await ctx.service.cancel(LOCAL_PRINCIPAL, workflow_id, limit=0)
            short = await ctx.service.short_workflow_ids(LOCAL_PRINCIPAL, [view.workflow_id])
        return view, short.get(view.workflow_id, view.workflow_id)

    view, short_id = run_sync(body())
    note = "" if view.finished_at else " (running repo runs are being stopped)"
    out.print(f"workflow {short_id}: {styled(view.status)} · {counts_text(view.counts)}{note}")


# --- database -------------------------------------------------------------------------------


def _describe(settings: MahavishnuSettings) -> str:
    from mahavishnu.platform.settings import mask_url

    schema = f" (schema {settings.database_schema})" if settings.database_schema else ""
    return f"{mask_url(settings.effective_database_url)}{schema}"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema to the version this code needs (refuses a newer one)."""
    settings = load_settings()

    async def body() -> tuple[str | None, str]:
        async with database(settings) as db:
            before = await db.schema_state()
            after = await db.ensure_schema(upgrade=True)
        return before.current, after.head

    before, head = run_sync(body())
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
    settings = load_settings()
    if not yes:
        if not sys.stdin.isatty():
            fail("a downgrade drops what later revisions added; pass --yes to confirm", 2)
        typer.confirm(f"Downgrade the schema to {revision}?", abort=True)

    async def body() -> tuple[str | None, str | None]:
        async with database(settings, create=False) as db:
            before = (await db.schema_state()).current
            await db.downgrade(revision)
            return before, (await db.schema_state()).current

    before, after = run_sync(body())
    out.print(f"database: {escape(_describe(settings))}")
    out.print(f"downgraded from {before} to revision {after or 'none (empty schema)'}")


@db_app.command("status")
def db_status() -> None:
    """Print the schema revision in the database and the one this code needs; exit 1 if they differ."""
    settings = load_settings()

    async def body() -> tuple[str | None, str, str | None]:
        async with database(settings, create=False) as db:
            state = await db.schema_state()
            try:
                await db.ensure_schema(upgrade=False)  # says why a schema that is not current is refused
            except ConfigurationError as exc:
                return state.current, state.head, exc.message
        return state.current, state.head, None

    current, head, problem = run_sync(body())
    out.print(f"database: {escape(_describe(settings))}")
    out.print(f"current:  {current or 'none (empty database)'}")
    out.print(f"head:     {head}")
    if problem is None:
        out.print("[green]up to date[/green]")
        return
    out.print(f"[yellow]not current[/yellow]: {escape(problem)}")
    raise typer.Exit(1)
