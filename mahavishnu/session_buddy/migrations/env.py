"""Session-Buddy's Alembic environment: the platform runs it against `alembic_version_session_buddy`."""

from __future__ import annotations

from mahavishnu.platform import run_migrations
from mahavishnu.session_buddy.models import Base

run_migrations(Base.metadata)
