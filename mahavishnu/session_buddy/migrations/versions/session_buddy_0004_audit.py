"""the hash-chained audit log and its head

Revision ID: session_buddy_0004
Revises: session_buddy_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0004"
down_revision = "session_buddy_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_buddy_audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_session_buddy_audit_tenant_seq", "session_buddy_audit", ["tenant", "seq"])
    head = op.create_table(
        "session_buddy_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "digest": bytes(32)}])


def downgrade() -> None:
    op.drop_table("session_buddy_audit_head")
    op.drop_index("ix_session_buddy_audit_tenant_seq", table_name="session_buddy_audit")
    op.drop_table("session_buddy_audit")
