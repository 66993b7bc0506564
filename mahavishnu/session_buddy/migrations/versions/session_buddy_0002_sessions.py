"""coding sessions and their checkpoints

Revision ID: session_buddy_0002
Revises: session_buddy_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0002"
down_revision = "session_buddy_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_buddy_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("project_token", sa.LargeBinary(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("seal_version", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_checkpoint_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_session_buddy_sessions_tenant_project",
        "session_buddy_sessions",
        ["tenant", "project_token", "ended_at"],
    )
    op.create_table(
        "session_buddy_checkpoints",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session_buddy_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "number"),
    )


def downgrade() -> None:
    op.drop_table("session_buddy_checkpoints")
    op.drop_index("ix_session_buddy_sessions_tenant_project", table_name="session_buddy_sessions")
    op.drop_table("session_buddy_sessions")
