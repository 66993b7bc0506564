"""Echo's Alembic environment: the platform runs it against Echo's version table."""

from __future__ import annotations

from mahavishnu.platform import run_migrations
from tests.support.echo_service.models import Base

run_migrations(Base.metadata)
