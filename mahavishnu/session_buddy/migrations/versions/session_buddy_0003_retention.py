"""per-tenant retention policies

Revision ID: session_buddy_0003
Revises: session_buddy_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0003"
down_revision = "session_buddy_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_buddy_retention_policies",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("max_age_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )


def downgrade() -> None:
    op.drop_table("session_buddy_retention_policies")
