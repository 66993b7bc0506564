"""`mahavishnu dlq`: the dead-letter queue from the command line (list, show, retry, purge)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli_common import (
    age,
    attempts_of,
    id_table,
    load_settings,
    more_than_shown,
    open_service,
    styled,
    until_final,
    when,
)
from mahavishnu.orchestrator.workflows.cli_output import attempt_lines
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.cli_support import fail, first_line, out, print_json, run_sync

if TYPE_CHECKING:
    from mahavishnu.orchestrator.workflows.pages import DeadLetterList
    from mahavishnu.orchestrator.workflows.views import AttemptView, DeadLetterView

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    help="The dead-letter queue: repo runs that used up their retries.", no_args_is_help=True
)
DeadLetterId = Annotated[
    str, typer.Argument(metavar="ID", help="The dead letter ID, or any unique prefix of it (4+ characters).")
]


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
        ("run", entry.run_id),
        ("created", when(entry.created_at)),
        ("updated", when(entry.updated_at)),
        ("last error", escape(entry.last_error or "-")),
    ]


@dlq_app.command("list")
def dlq_list(
    include_resolved: Annotated[bool, typer.Option("--all", help="Include resolved entries.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters (open and retrying; --all adds resolved ones), newest first, each by its
    short ID (any unique prefix of an ID works)."""
    settings = load_settings()

    async def body() -> tuple[DeadLetterList, dict[str, str]]:
        async with open_service(settings) as ctx:
            page = await ctx.service.dead_letters(
                LOCAL_PRINCIPAL, include_resolved=include_resolved, limit=limit
            )
            ids = [e.dead_letter_id for e in page.dead_letters]
            return page, await ctx.service.short_dead_letter_ids(LOCAL_PRINCIPAL, ids)

    page, short = run_sync(body())
    entries = page.dead_letters
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table = id_table(
        "id",
        ("workflow", {}),
        ("repo", {}),
        ("status", {"no_wrap": True}),
        ("tries", {"justify": "right", "no_wrap": True}),
        ("age", {"justify": "right", "no_wrap": True}),
        ("last error", {}),
    )
    for e in entries:
        table.add_row(
            short.get(e.dead_letter_id, e.dead_letter_id),
            escape(e.workflow),
            escape(e.repo),
            styled(e.status),
            str(e.attempts),
            age(e.updated_at),
            Text(first_line(e.last_error), no_wrap=True, overflow="ellipsis"),
        )
    out.print(table if entries else "no dead letters")
    more_than_shown(len(entries), page.total)


@dlq_app.command("show")
def dlq_show(
    dead_letter_id: DeadLetterId,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (with every attempt, as attempt_history).")
    ] = False,
) -> None:
    """Show one dead letter: its inputs, every attempt (exit code, duration, output) and last error."""
    settings = load_settings()

    async def body() -> tuple[DeadLetterView, list[AttemptView]]:
        async with open_service(settings) as ctx:
            entry = await ctx.service.dead_letter(LOCAL_PRINCIPAL, dead_letter_id)
            attempts = await attempts_of(ctx, [entry.run_id])
        return entry, attempts[entry.run_id]

    entry, attempts = run_sync(body())
    if as_json:
        history = [a.model_dump(mode="json") for a in attempts]
        print_json({**entry.model_dump(mode="json"), "attempt_history": history})
        return
    for label, value in _dead_letter_lines(entry):
        out.print(f"{label + ':':12}{value}")
    for attempt in attempts:
        out.print()
        for line in attempt_lines(attempt):
            out.print(line)


async def _retry(settings: MahavishnuSettings, dead_letter_id: str, *, wait: bool) -> DeadLetterView:
    async with open_service(settings, engine=wait) as ctx:
        entry = await ctx.service.retry_dead_letter(LOCAL_PRINCIPAL, dead_letter_id)
        if ctx.engine is None:
            return entry
        async with ctx.engine.running(workflows={entry.workflow_id}):
            # The workflow closes once the run is final, whatever the outcome (cancelled included).
            await until_final(ctx.service, entry.workflow_id, None, None)
        return await ctx.service.dead_letter(LOCAL_PRINCIPAL, entry.dead_letter_id)


@dlq_app.command("retry")
def dlq_retry(
    dead_letter_id: DeadLetterId,
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
