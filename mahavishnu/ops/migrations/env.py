"""Alembic environment of ops' tree: the platform runs it (`alembic_version_ops` table)."""

from __future__ import annotations

from mahavishnu.ops.backup.events import OpsBase
from mahavishnu.platform.db import run_migrations

run_migrations(OpsBase.metadata)
