"""`mahavishnu memories …`: Session-Buddy's store from the command line, without a server.

The commands open the service's own database with its own settings (SESSION_BUDDY_*,
SESSION_ENCRYPTION_KEY, POSTGRES_URL) and act as the local administrator: whoever can run them
can read the key and the database already. Each act is in the audit log under the actor
`cli:<user>`. They share the database with a running server safely (the same transactions and
constraints as the tools).

Exit codes: 0 success; 1 the database is unavailable, or the audit chain is broken; 2 bad
input or unusable settings.

Heavy modules (SQLAlchemy, the vault, the embedding model) load inside the commands, so
`mahavishnu --help` stays quick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mahavishnu.platform.cli_support import fail, out, print_json, run_sync
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.session_buddy.settings import SessionBuddySettings

if TYPE_CHECKING:
    from mahavishnu.platform.crypto import KeyRing
    from mahavishnu.platform.db import Database
    from mahavishnu.session_buddy.audit import AuditVerification
    from mahavishnu.session_buddy.exchange import ImportReport
    from mahavishnu.session_buddy.meaning import Meaning
    from mahavishnu.session_buddy.memories import Memories
    from mahavishnu.session_buddy.memory_records import Limits
    from mahavishnu.session_buddy.vault import Vault
    from mahavishnu.session_buddy.views import SearchPage

__all__ = ["memories_app"]

memories_app = typer.Typer(
    help="Session-Buddy's memories: search, statistics, export and import, key rotation, the audit log.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The hash-chained audit log of every read and write.", no_args_is_help=True)
memories_app.add_typer(audit_app, name="audit")

Tenant = Annotated[
    str, typer.Option(help="The tenant whose memories to use (a token's `tenant` claim, or its subject).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@dataclasses.dataclass(frozen=True, slots=True)
class _Store:
    settings: SessionBuddySettings
    db: Database
    ring: KeyRing
    vault: Vault


def _settings() -> SessionBuddySettings:
    try:
        return SessionBuddySettings.load()
    except ConfigurationError as exc:
        fail(exc.message, 2)


@contextlib.asynccontextmanager
async def _opened(settings: SessionBuddySettings) -> AsyncIterator[_Store]:
    """The existing database (never created here) at the current schema, and its vault."""
    from mahavishnu.platform.db import Database
    from mahavishnu.session_buddy.vault import key_ring, open_vault

    db = Database.from_settings(settings, create=False)
    try:
        await db.ensure_schema(upgrade=False)
        ring = key_ring(settings)
        yield _Store(settings, db, ring, await open_vault(db, ring))
    finally:
        await db.dispose()


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _limits(store: _Store) -> Limits:
    from mahavishnu.session_buddy.memory_records import Limits

    return Limits(max_content_chars=store.settings.max_content_chars, max_tags=store.settings.max_tags)


def _memories(store: _Store, tenant: str, *, meaning: Meaning | None = None) -> Memories:
    from mahavishnu.session_buddy.memories import Memories

    return Memories(store.db, store.vault, _limits(store), tenant=tenant, author=_actor(), meaning=meaning)


@memories_app.command()
def keygen() -> None:
    """Print a new key for SESSION_ENCRYPTION_KEY (keep it apart from the database and backups).
    To rotate, put the new key first: SESSION_ENCRYPTION_KEY=NEW,OLD, then run rotate-key."""
    from mahavishnu.platform.crypto import generate_key

    typer.echo(generate_key())


@memories_app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words, an identifier, or a question in your own words.")],
    tenant: Tenant,
    mode: Annotated[str, typer.Option(help="hybrid, keyword or semantic.")] = "hybrid",
    project: Annotated[str | None, typer.Option(help="Only memories of this project.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only memories with this tag (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, best first.")] = 10,
    as_json: AsJson = False,
) -> None:
    """Search a tenant's memories as search_memories does (semantic and hybrid load the model)."""
    from mahavishnu.session_buddy.memories import Filters

    settings = _settings()

    async def main() -> SearchPage:
        async with _opened(settings) as store:
            meaning = await _meaning(store) if mode != "keyword" else None
            memories = _memories(store, tenant, meaning=meaning)
            filters = Filters(tags=tag or (), project=project)
            return await memories.search(query, filters, mode=mode, limit=limit)

    page = run_sync(main())
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    table = Table("score", "id", "kind", "memory", "tags", box=None)
    for hit in page.hits:
        memory = hit.memory
        table.add_row(
            f"{hit.score:.3f}", memory.id, memory.kind, escape(_short(memory.content)), ", ".join(memory.tags)
        )
    out.print(table if page.hits else "no memory matches")


async def _meaning(store: _Store) -> Meaning:
    """The embedding model and this database's vectors, loaded for one search."""
    import asyncio

    from mahavishnu.platform.search.embeddings import load_embedder
    from mahavishnu.session_buddy.meaning import Meaning

    embedder = await asyncio.to_thread(
        load_embedder, store.settings.embedding_model, cache=store.settings.effective_model_cache_dir
    )
    meaning = Meaning(store.db, embedder)
    await meaning.rebuild(store.vault)
    return meaning


def _short(content: str, most: int = 100) -> str:
    flat = " ".join(content.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


@memories_app.command()
def stats(tenant: Tenant, as_json: AsJson = False) -> None:
    """How many memories a tenant keeps, by kind, and how many deleted ones await their purge."""
    settings = _settings()

    async def main() -> dict[str, object]:
        async with _opened(settings) as store:
            return (await _memories(store, tenant).stats()).model_dump()

    answer = run_sync(main())
    if as_json:
        print_json(answer)
        return
    out.print(f"{answer['total']} memories {answer['by_kind']}; {answer['deleted_awaiting_purge']} deleted")


@memories_app.command("export")
def export_command(
    tenant: Tenant,
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the JSONL (made afresh, readable by you only).")
    ],
) -> None:
    """Write a tenant's memories (every version, embeddings, a checksum per record and a signed
    trailer) to a JSONL file that `import` verifies whole before writing anything."""
    from mahavishnu.session_buddy.exchange import Exchange, export_all

    settings = _settings()
    try:
        descriptor = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror} (export never overwrites a file)", 2)

    async def main() -> int:
        with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
            async with _opened(settings) as store:
                exchange = Exchange(store.db, store.vault, _limits(store), tenant=tenant, author=_actor())
                return await export_all(exchange, lambda line: sink.write(line + "\n"))

    try:
        count = run_sync(main())
    except typer.Exit:
        out_file.unlink(missing_ok=True)  # no half-written export left behind
        raise
    out.print(f"exported {count} memories of {escape(tenant)} to {escape(str(out_file))}")


@memories_app.command("import")
def import_command(
    source: Annotated[Path, typer.Argument(help="A JSONL file that `export` wrote.")],
    tenant: Tenant,
    trust_foreign_signature: Annotated[
        bool,
        typer.Option(
            help="Accept a file signed under a key this deployment does not hold (its checksums, "
            "count and digest are still checked)."
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Import an export into a tenant: the file is verified whole first (a tampered, cut or
    reordered file is refused with nothing written); memories already here are skipped, so
    importing twice changes nothing."""
    from mahavishnu.session_buddy.exchange import Exchange

    settings = _settings()
    if not source.is_file():
        fail(f"no file at {source}", 2)

    async def main() -> ImportReport:
        async with _opened(settings) as store:
            meaning = await _meaning(store)  # keeps the exported vectors of the running model
            exchange = Exchange(
                store.db, store.vault, _limits(store), tenant=tenant, author=_actor(), meaning=meaning
            )
            return await exchange.import_file(source, trust_foreign_signature=trust_foreign_signature)

    report = run_sync(main())
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    out.print(
        f"{report.records} memories in the file: {report.created} imported, {report.skipped} "
        f"already here or expired; {report.vectors} embeddings kept"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Rotated:
    current_key_id: str
    rotated: int
    remaining: int
    unreadable: list[str]


@memories_app.command("rotate-key")
def rotate_key(as_json: AsJson = False) -> None:
    """Re-seal everything under the first key of SESSION_ENCRYPTION_KEY, now, in this process
    (a running server does the same in the background; both may run at once). When it reports 0
    remaining, the older keys can be removed from SESSION_ENCRYPTION_KEY (exit 1 until then)."""
    from mahavishnu.session_buddy.rotation import Rotation, remaining

    settings = _settings()

    async def main() -> _Rotated:
        async with _opened(settings) as store:
            sweep = Rotation(store.ring)
            await sweep.run(store.db)
            left = await remaining(store.db, store.ring)
            return _Rotated(store.ring.current_key_id, sweep.rotated, left, sweep.errors)

    answer = run_sync(main())
    if as_json:
        print_json(dataclasses.asdict(answer))
    else:
        out.print(
            f"re-sealed {answer.rotated} values under key {answer.current_key_id}; "
            f"{answer.remaining} remain under older keys"
        )
        for problem in answer.unreadable:
            out.print(f"[red]unreadable:[/red] {escape(problem)}")
    if answer.remaining:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(as_json: AsJson = False) -> None:
    """Check the whole audit chain against its keyed digests: an edited, removed or reordered
    entry is found (exit 1, naming the first one)."""
    from mahavishnu.session_buddy import audit

    settings = _settings()

    async def main() -> AuditVerification:
        async with _opened(settings) as store:
            return await audit.verify(store.db, store.vault)

    answer = run_sync(main())
    if as_json:
        print_json(answer.model_dump())
    elif answer.intact:
        out.print(f"[green]intact[/green]: {answer.entries} entries")
    else:
        out.print(
            f"[red]broken[/red] at entry {answer.first_broken_seq}: {escape(answer.reason or '')} "
            f"({answer.entries} entries before it match)"
        )
    if not answer.intact:
        raise typer.Exit(1)
