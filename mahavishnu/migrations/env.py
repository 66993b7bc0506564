"""Alembic environment of Mahavishnu's tree: the platform runs it (`alembic_version` table)."""

from __future__ import annotations

from mahavishnu.orchestrator.workflows.models import Base
from mahavishnu.platform.db import run_migrations

run_migrations(Base.metadata)
