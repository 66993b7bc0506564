"""Akosha's Alembic environment: the platform runs it against `alembic_version_akosha`."""

from __future__ import annotations

from mahavishnu.akosha.models import Base
from mahavishnu.platform import run_migrations

run_migrations(Base.metadata)
