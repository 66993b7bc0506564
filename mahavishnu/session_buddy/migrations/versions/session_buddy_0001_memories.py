"""memories, their versions, blind tokens and the sealed index key

Revision ID: session_buddy_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0001"
down_revision = None
branch_labels = None
depends_on = None

_MEMORY = "session_buddy_memories.id"


def upgrade() -> None:
    op.create_table(
        "session_buddy_index_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "session_buddy_memories",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("importance", sa.Float(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("content_mac", sa.LargeBinary(length=32), nullable=True),
        sa.Column("idempotency_mac", sa.LargeBinary(length=32), nullable=True),
        sa.Column("term_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "idempotency_mac", name="uq_session_buddy_memories_idempotency"),
        sa.UniqueConstraint("tenant", "content_mac", name="uq_session_buddy_memories_content"),
    )
    op.create_index("ix_session_buddy_memories_tenant_id", "session_buddy_memories", ["tenant", "id"])
    op.create_table(
        "session_buddy_memory_versions",
        sa.Column("memory_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["memory_id"], [_MEMORY], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("memory_id", "version"),
    )
    for table, extra in (
        ("session_buddy_memory_terms", [sa.Column("occurrences", sa.Integer(), nullable=False)]),
        ("session_buddy_memory_labels", []),
    ):
        op.create_table(
            table,
            sa.Column("memory_id", sa.String(length=36), nullable=False),
            sa.Column("token", sa.LargeBinary(length=16), nullable=False),
            sa.Column("tenant", sa.String(length=128), nullable=False),
            *extra,
            sa.ForeignKeyConstraint(["memory_id"], [_MEMORY], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("memory_id", "token"),
        )
        op.create_index(f"ix_{table}_tenant_token", table, ["tenant", "token"])


def downgrade() -> None:
    for table in ("session_buddy_memory_labels", "session_buddy_memory_terms"):
        op.drop_index(f"ix_{table}_tenant_token", table_name=table)
        op.drop_table(table)
    op.drop_table("session_buddy_memory_versions")
    op.drop_index("ix_session_buddy_memories_tenant_id", table_name="session_buddy_memories")
    op.drop_table("session_buddy_memories")
    op.drop_table("session_buddy_index_keys")
