"""Consistent database snapshots taken while the server runs, and restoring them.

SQLite uses the online backup API (a consistent copy even with writers
active). PostgreSQL uses `pg_dump --format=custom` of the configured schema
and `pg_restore --clean --single-transaction`, so a restore either replaces
everything or nothing. Connection strings reach the tools through the
environment (PGPASSWORD), never on a command line others can read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from mahavishnu.platform.errors import ConfigurationError, UnavailableError

__all__ = ["Snapshotter"]


class Snapshotter:
    def __init__(self, url: str, schema: str | None) -> None:
        self._url = make_url(url)
        self._schema = schema
        self.dialect = self._url.get_backend_name()
        if self.dialect not in {"sqlite", "postgresql"}:
            raise ConfigurationError(f"cannot back up a {self.dialect} database")

    @property
    def filename(self) -> str:
        return "database.sqlite3" if self.dialect == "sqlite" else "database.pgdump"

    # --- SQLite -------------------------------------------------------------------
    def _sqlite_path(self) -> Path:
        if not self._url.database or self._url.database == ":memory:":
            raise ConfigurationError("an in-memory SQLite database cannot be backed up")
        return Path(self._url.database)

    # --- PostgreSQL ---------------------------------------------------------------
    def _pg_args(self, database: str | None = None) -> tuple[list[str], dict[str, str]]:
        url = self._url
        args = ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432)]
        args += ["--username", url.username or "postgres", "--dbname", database or url.database or "postgres"]
        env = {**os.environ}
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        return args, env

    def _pg(self, program: str, args: list[str], env: dict[str, str]) -> None:
        binary = shutil.which(program)
        if binary is None:
            raise ConfigurationError(f"{program} is not installed (Debian: postgresql-client)")
        result = subprocess.run([binary, *args], env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UnavailableError(f"{program} failed: {result.stderr.strip().splitlines()[-1:] or ['?']}")

    # --- operations -------------------------------------------------------------------
    def dump(self, target: Path) -> None:
        """Write a consistent snapshot of the live database to `target`."""
        if self.dialect == "sqlite":
            _sqlite_copy(self._sqlite_path(), target)
            return
        args, env = self._pg_args()
        schema = ["--schema", self._schema] if self._schema else []
        self._pg(
            "pg_dump",
            [*args, "--format=custom", "--no-owner", "--no-privileges", *schema, "--file", str(target)],
            env,
        )

    def restore(self, snapshot: Path) -> None:
        """Replace the live database's contents with `snapshot`, all or nothing."""
        if self.dialect == "sqlite":
            _sqlite_copy(snapshot, self._sqlite_path())
            return
        args, env = self._pg_args()
        if self._schema:
            self._restore_schema(snapshot, args, env)
            return
        self._pg(
            "pg_restore",
            [
                *args,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                str(snapshot),
            ],
            env,
        )

    def _restore_schema(self, snapshot: Path, args: list[str], env: dict[str, str]) -> None:
        """Drop the whole schema and replay the snapshot, in one transaction. `pg_restore --clean`
        drops only the objects the snapshot holds, so it fails on a schema that has gained a table
        since (a later migration, ops' version table) instead of restoring it."""
        script = snapshot.with_name(snapshot.name + ".sql")
        self._pg("pg_restore", ["--no-owner", "--no-privileges", "--file", str(script), str(snapshot)], env)
        drop = f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE'  # an identifier, checked by settings
        quiet = ["--no-psqlrc", "--quiet", "--single-transaction", "--set", "ON_ERROR_STOP=1"]
        self._pg("psql", [*args, *quiet, "--command", drop, "--file", str(script)], env)

    def check(self, snapshot: Path, scratch: Path) -> dict[str, int]:
        """Restore `snapshot` somewhere disposable and count its rows per table: proof it opens."""
        if self.dialect == "sqlite":
            copy = scratch / "verify.sqlite3"
            shutil.copyfile(snapshot, copy)
            connection = sqlite3.connect(copy)
            try:
                if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise UnavailableError("the database snapshot fails SQLite's integrity check")
                tables = [
                    r[0]
                    for r in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'repo_runs_fts%'"
                        " AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                # Table names come from the snapshot's own catalogue, quoted as identifiers.
                count = 'SELECT count(*) FROM "{}"'
                return {
                    t: connection.execute(count.format(t.replace('"', '""'))).fetchone()[0] for t in tables
                }
            finally:
                connection.close()
        return self._check_postgres(snapshot)

    def _check_postgres(self, snapshot: Path) -> dict[str, int]:
        scratch_db = f"mahavishnu_verify_{uuid.uuid4().hex[:10]}"
        args, env = self._pg_args()
        self._psql(args, env, f'CREATE DATABASE "{scratch_db}"')
        try:
            scratch_args, _ = self._pg_args(scratch_db)
            self._pg(
                "pg_restore",
                [*scratch_args, "--no-owner", "--no-privileges", "--exit-on-error", str(snapshot)],
                env,
            )
            # The schema name is restricted by settings to [a-z_][a-z0-9_]*; table names come from
            # the snapshot's own catalogue and are quoted as identifiers.
            schema = self._schema or "public"
            query = (
                "SELECT table_name FROM information_schema.tables "  # noqa: S608
                f"WHERE table_schema = '{schema}' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
            tables = self._psql(scratch_args, env, query).split()
            return {
                t: int(self._psql(scratch_args, env, f'SELECT count(*) FROM "{schema}"."{t}"'))  # noqa: S608
                for t in tables
            }
        finally:
            self._psql(args, env, f'DROP DATABASE IF EXISTS "{scratch_db}"')

    def _psql(self, args: list[str], env: dict[str, str], sql: str) -> str:
        binary = shutil.which("psql")
        if binary is None:
            raise ConfigurationError("psql is not installed (Debian: postgresql-client)")
        result = subprocess.run(
            [binary, *args, "--no-psqlrc", "--tuples-only", "--no-align", "--command", sql],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise UnavailableError(f"psql failed: {result.stderr.strip()[:200]}")
        return result.stdout.strip()


def _sqlite_copy(source_path: Path, destination_path: Path) -> None:
    """SQLite's online backup API: a consistent copy even while others write to the source."""
    source = sqlite3.connect(source_path)
    destination = sqlite3.connect(destination_path, timeout=30)
    try:
        source.backup(destination)
    finally:
        destination.close()
        source.close()
