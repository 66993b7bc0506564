"""What every service's command-line group shares: one-line errors with their exit codes,
running a command's async body, and printing JSON. Exit codes: 1 the service's data is
unavailable (or a check failed), 2 bad input or unusable settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mahavishnu.platform.errors import MahavishnuError, UnavailableError

__all__ = ["err", "fail", "first_line", "out", "print_json", "run_sync"]

T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's async body; a failure the caller can act on is one line, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(coro)
    except UnavailableError as exc:
        fail(exc.message, 1)
    except MahavishnuError as exc:
        fail(exc.message, 2)
    except (SQLAlchemyError, OSError) as exc:
        fail(f"the database is unavailable: {first_line(str(exc))}", 1)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
