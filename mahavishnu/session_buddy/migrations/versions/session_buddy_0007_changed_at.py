"""memories say when they last changed what keyword search sees, for other processes to follow

Revision ID: session_buddy_0007
Revises: session_buddy_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0007"
down_revision = "session_buddy_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("session_buddy_memories", sa.Column("changed_at", UTCDateTime(), nullable=True))
    op.execute(sa.text("UPDATE session_buddy_memories SET changed_at = COALESCE(deleted_at, updated_at)"))
    op.create_index("ix_session_buddy_memories_changed_at", "session_buddy_memories", ["changed_at"])


def downgrade() -> None:
    op.drop_index("ix_session_buddy_memories_changed_at", table_name="session_buddy_memories")
    # In place (SQLite 3.35+ has DROP COLUMN): batch mode would rebuild the table, and dropping
    # the old one would cascade to the rows that reference it.
    op.execute("ALTER TABLE session_buddy_memories DROP COLUMN changed_at")
