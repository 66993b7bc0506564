"""`mahavishnu smoke URL [--token T] [-v] [--service NAME]`: the smoke checks of the service
that answers at URL, from the command line.

Mount it on the main app with `app.command("smoke")(smoke_command)`. This module's
own `app` is a one-command Typer, so `python -m mahavishnu.ops.smoke_cli URL` works too.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mahavishnu.ops.smoke import CheckResult, Detected

__all__ = ["app", "smoke_command", "use_color"]


def use_color(stream: object = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    target = stream if stream is not None else sys.stdout
    isatty = getattr(target, "isatty", None)
    return bool(isatty and isatty())


def smoke_command(
    url: Annotated[str, typer.Argument(help="Base URL of the server, e.g. http://127.0.0.1:8680.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            "-t",
            envvar="MAHAVISHNU_TOKEN",
            show_envvar=True,
            help="Bearer token for /mcp when the server has auth on (prefer the env var: argv is visible).",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show each request and response.")] = False,
    budget: Annotated[
        float, typer.Option(help="Seconds allowed for the whole run.", min=1.0, max=60.0)
    ] = 9.0,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="Run this service's checks instead of asking the server which service it is.",
        ),
    ] = None,
) -> None:
    """Run the smoke checks of the service that answers (Mahavishnu: 8) against a running server;
    exit 0 only when all pass."""
    # Imported here: httpx and the checks cost every other command's start about 60 ms.
    from mahavishnu.ops.smoke import normalize_base_url, render_plan, render_result, render_summary, run_smoke

    try:
        base = normalize_base_url(url)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    color = use_color()
    total, index = 0, 0

    def announce(detected: Detected) -> None:
        nonlocal total
        total = detected.checks
        typer.echo(render_plan(base, detected))

    def show(result: CheckResult) -> None:
        nonlocal index
        index += 1
        for line in render_result(result, index, total, verbose=verbose, color=color):
            typer.echo(line)

    report = run_smoke(base, token or None, budget=budget, service=service, on_plan=announce, on_result=show)
    for line in render_summary(report, color=color):
        typer.echo(line)
    raise typer.Exit(0 if report.passed else 1)


app = typer.Typer(
    help="Smoke-test a running server of any service on the platform.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("smoke")(smoke_command)


if __name__ == "__main__":
    app()
