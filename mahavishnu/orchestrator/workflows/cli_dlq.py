"""`mahavishnu dlq`: the dead-letter queue from the command line (list, show, retry, purge)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli_common import (
    fail,
    first_line,
    load_settings,
    open_service,
    out,
    print_json,
    run_sync,
    styled,
    until_final,
    when,
)
from mahavishnu.platform.auth import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    from mahavishnu.orchestrator.workflows.views import DeadLetterView

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    help="The dead-letter queue: repo runs that used up their retries.", no_args_is_help=True
)


# --- dead letters ---------------------------------------------------------------------------


def _dead_letter_lines(entry: DeadLetterView) -> list[tuple[str, str]]:
    argv = entry.inputs.get("argv")
    return [
        ("id", entry.dead_letter_id),
        ("status", styled(entry.status)),
        ("workflow", f"{escape(entry.workflow)} ({entry.workflow_id})"),
        ("repo", escape(entry.repo)),
        ("path", escape(str(entry.inputs.get("repo_path", "-")))),
        ("command", escape(shlex.join(argv)) if isinstance(argv, list) else "-"),
        ("attempts", str(entry.attempts)),
        ("retries", str(entry.retries)),
        ("created", when(entry.created_at)),
        ("updated", when(entry.updated_at)),
        ("last error", escape(entry.last_error or "-")),
    ]


@dlq_app.command("list")
def dlq_list(
    include_resolved: Annotated[bool, typer.Option("--all", help="Include resolved entries.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters (open and retrying; --all adds resolved ones), newest first."""
    settings = load_settings()

    async def body() -> list[DeadLetterView]:
        async with open_service(settings) as ctx:
            page = await ctx.service.dead_letters(LOCAL_PRINCIPAL, include_resolved=include_resolved)
        return page.dead_letters

    entries = run_sync(body())
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "workflow", "repo", "status", "attempts", "retries", "updated", "last error"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.dead_letter_id,
            escape(e.workflow),
            escape(e.repo),
            styled(e.status),
            str(e.attempts),
            str(e.retries),
            when(e.updated_at),
            escape(first_line(e.last_error)),
        )
    out.print(table if entries else "no dead letters")


@dlq_app.command("show")
def dlq_show(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one dead letter: its inputs, attempts and last error."""
    settings = load_settings()

    async def body() -> DeadLetterView:
        async with open_service(settings) as ctx:
            return await ctx.service.dead_letter(LOCAL_PRINCIPAL, dead_letter_id)

    entry = run_sync(body())
    if as_json:
        typer.echo(entry.model_dump_json(indent=2))
        return
    for label, value in _dead_letter_lines(entry):
        out.print(f"{label + ':':12}{value}")


async def _retry(settings: MahavishnuSettings, dead_letter_id: str, *, wait: bool) -> DeadLetterView:
    async with open_service(settings, engine=wait) as ctx:
        entry = await ctx.service.retry_dead_letter(LOCAL_PRINCIPAL, dead_letter_id)
        if ctx.engine is None:
            return entry
        async with ctx.engine.running(workflows={entry.workflow_id}):
            # The workflow closes once the run is final, whatever the outcome (cancelled included).
            await until_final(ctx.service, entry.workflow_id, None, None)
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
    settings = load_settings()
    entry = run_sync(_retry(settings, dead_letter_id, wait=wait))
    if not wait:
        out.print(f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): queued for retry")
        return
    if entry.status == "resolved":
        out.print(f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): [green]resolved[/green]")
        return
    detail = escape(first_line(entry.last_error) or "the retry did not finish")
    out.print(f"dead letter {entry.dead_letter_id} ({escape(entry.repo)}): {styled(entry.status)} · {detail}")
    raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    everything: Annotated[
        bool, typer.Option("--all", help="Also delete open entries (not ones being retried).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete resolved dead letters; with --all, open ones too (asks first unless --yes)."""
    settings = load_settings()
    if everything and not yes:
        if not sys.stdin.isatty():
            fail("--all deletes open dead letters; pass --yes to confirm without a terminal", 2)
        typer.confirm("Delete every open and resolved dead letter?", abort=True)

    async def body() -> int:
        async with open_service(settings) as ctx:
            return await ctx.service.purge_dead_letters(LOCAL_PRINCIPAL, resolved_only=not everything)

    out.print(f"purged {run_sync(body())} dead letter(s)")
