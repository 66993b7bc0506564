"""backup events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:58:27.896416
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("archive", sa.String(length=255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backup_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_backup_events_kind"), ["kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("backup_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backup_events_kind"))
        batch_op.drop_index(batch_op.f("ix_backup_events_created_at"))
    op.drop_table("backup_events")
