"""`mahavishnu backup …`: the same operations as the admin MCP tools, for people and cron."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table

from mahavishnu.ops.service_ops import ServiceOps, ServiceOpsResolver
from mahavishnu.platform.errors import MahavishnuError

if TYPE_CHECKING:  # the manager pulls in SQLAlchemy and the MCP SDK; load it only when a command runs
    from mahavishnu.ops.backup.manager import BackupManager

__all__ = ["backup_app", "use_services"]

backup_app = typer.Typer(help="Create, list, verify, restore and prune backups.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


_resolver: list[ServiceOpsResolver] = []


def use_services(resolve: ServiceOpsResolver) -> None:
    """Called once by the composition root: how `--service NAME` becomes settings and files
    (ops import no service, so they are told)."""
    _resolver[:] = [resolve]


def _service(name: str) -> ServiceOps:
    if not _resolver:
        raise RuntimeError("mahavishnu.ops.backup.cli.use_services was never called")
    return _resolver[0](name)


def _run(service: str, action: Callable[[BackupManager], Awaitable[T]]) -> T:
    """Build settings, database and manager; run `action`; turn our errors into one line and exit 2."""

    from mahavishnu.ops.backup.manager import BackupManager
    from mahavishnu.platform.db import Database

    ops = _service(service)

    async def main() -> T:
        db = Database.from_settings(ops.settings)
        try:
            # Never migrate here: a backup must capture the schema as it is (see `mahavishnu db upgrade`).
            await db.ensure_schema(upgrade=False)
            return await action(BackupManager(ops.settings, db, files=ops.backup_files))
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except MahavishnuError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None


def _emit(model: BaseModel, as_json: bool) -> None:
    if as_json:
        typer.echo(model.model_dump_json(indent=2))
    else:
        for key, value in model.model_dump(mode="json").items():
            out.print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArgument = Annotated[
    str,
    typer.Argument(
        help="A backup ID (any unique prefix, as `backup list` shows), an archive name, or 'latest'."
    ),
]
ServiceOption = Annotated[
    str, typer.Option("--service", help="The service whose data to back up (a name `serve` knows).")
]


@backup_app.command("create")
def create(as_json: JsonFlag = False, service: ServiceOption = "mahavishnu") -> None:
    """Back up the database, the settings (secrets masked) and the service's own files (Mahavishnu:
    the manifest) now."""
    _emit(_run(service, lambda m: m.create()), as_json)


NAME_COLUMN_FROM = 120
"""Terminal width from which `backup list` also shows archive names (never cut: IDs are the
handle, and a name cut in half could not be copied either)."""


@backup_app.command("list")
def list_backups(as_json: JsonFlag = False, service: ServiceOption = "mahavishnu") -> None:
    """List archives, newest first, with short IDs that every backup command takes."""
    from mahavishnu.ops.backup.ids import short_id_length

    backups = _run(service, lambda m: m.backups())
    if as_json:
        typer.echo(json.dumps([b.model_dump(mode="json") for b in backups], indent=2))
        return
    if not backups:
        out.print(f"No backups of {service} yet: mahavishnu backup create --service {service}")
        return
    length = short_id_length([b.id for b in backups])
    with_names = out.width >= NAME_COLUMN_FROM
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("ID", no_wrap=True, min_width=length)
    for header in ("created (UTC)", "bytes", "encrypted", "verified"):
        table.add_column(header, no_wrap=True, justify="right" if header == "bytes" else "left")
    if with_names:
        table.add_column("name", no_wrap=True)
    for b in backups:
        cells = [
            b.id[:length],
            f"{b.created_at:%Y-%m-%d %H:%M:%S}",
            str(b.bytes),
            "yes" if b.encrypted else "no",
        ]
        cells.append({None: "never", True: "passed", False: "FAILED"}[b.verified])
        table.add_row(*cells, *([b.name] if with_names else []))
    out.print(table)


@backup_app.command("show")
def show(
    name: IdArgument = "latest",
    as_json: JsonFlag = False,
    service: ServiceOption = "mahavishnu",
) -> None:
    """One archive: its full ID and name, size, and its newest verification."""
    _emit(_run(service, lambda m: m.show(name)), as_json)


@backup_app.command("verify")
def verify(
    name: IdArgument = "latest",
    as_json: JsonFlag = False,
    service: ServiceOption = "mahavishnu",
) -> None:
    """Recompute checksums and restore into a scratch database; exit 1 when anything is wrong."""
    report = _run(service, lambda m: m.verify(name))
    _emit(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@backup_app.command("restore")
def restore(
    name: IdArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
    service: ServiceOption = "mahavishnu",
) -> None:
    """Replace the current data with the archive's (a safety backup is taken first)."""
    if not yes:  # name the archive the answer is about, not the prefix that was typed
        chosen = _run(service, lambda m: m.show(name))
        _confirm_or_cancel(f"Replace the current data of {service} with {chosen.name} ({chosen.id[:12]})?")
        name = chosen.name
    _emit(_run(service, lambda m: m.restore(name)), as_json)


def _confirm_or_cancel(question: str) -> None:
    """Ask; on anything but yes (or no answer at all: stdin closed) say so and exit 1, as
    `apt` and `gh` do: the command did not do what it was asked."""
    try:
        if typer.confirm(question):
            return
        reason = ""
    except typer.Abort:  # end of input (or Ctrl-C) at the prompt
        reason = " (no answer; pass --yes to restore without asking)"
    err.print(f"restore cancelled{reason}: nothing was changed")
    raise typer.Exit(1)


@backup_app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    as_json: JsonFlag = False,
    service: ServiceOption = "mahavishnu",
) -> None:
    """Apply the retention (30 daily, 12 weekly, 6 monthly by default)."""
    report = _run(service, lambda m: m.prune(dry_run=dry_run))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for name in report.deleted:
        out.print(f"{verb} {name}")
    out.print(f"kept {len(report.kept)}, {verb} {len(report.deleted)}")


@backup_app.command("keygen")
def keygen() -> None:
    """Print a new encryption key for MAHAVISHNU_BACKUP_ENCRYPTION_KEY (store it apart from backups)."""
    from cryptography.fernet import Fernet  # only this command needs it; every CLI start paid 50 ms

    typer.echo(Fernet.generate_key().decode())
