"""A service's migration tree as its settings name it: `MigrationSet`, and Mahavishnu's own.

It lives apart from `db` so a settings class can name its tree without importing SQLAlchemy and
Alembic (the CLI's start-up stays quick).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IDENTIFIER", "ROOT_MIGRATIONS", "MigrationSet"]

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A plain SQL identifier: version tables and PostgreSQL schemas."""


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """A service's Alembic tree and the table that records how far it has run.

    Each service keeps its own version table, so several services can migrate their own tables
    side by side in one database (one PostgreSQL schema, even one SQLite file) without reading
    each other's revisions.
    """

    location: Path
    """The folder holding `env.py` and `versions/`."""
    version_table: str
    title: str
    """The service as messages name it ("newer than this version of Mahavishnu understands")."""
    upgrade_hint: str = "start the service with db_auto_upgrade on (the default)"
    """What to do about an older schema when start-up may not upgrade it."""

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.version_table):
            raise ValueError(f"version table {self.version_table!r} is not a plain SQL identifier")


ROOT_MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent.parent / "migrations",
    version_table="alembic_version",
    title="Mahavishnu",
    upgrade_hint="run `mahavishnu db upgrade`",
)
"""Mahavishnu's tree, the package's first. It keeps Alembic's default table name, so existing
deployments upgrade in place; every later service names a table of its own."""
