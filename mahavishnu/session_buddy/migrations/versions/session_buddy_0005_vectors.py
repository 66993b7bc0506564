"""sealed embeddings of memories, for search by meaning

Revision ID: session_buddy_0005
Revises: session_buddy_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "session_buddy_0005"
down_revision = "session_buddy_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_buddy_memory_vectors",
        sa.Column("memory_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("embedded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["memory_id"], ["session_buddy_memories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("memory_id"),
    )
    op.create_index(
        "ix_session_buddy_memory_vectors_embedded_at", "session_buddy_memory_vectors", ["embedded_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_session_buddy_memory_vectors_embedded_at", table_name="session_buddy_memory_vectors")
    op.drop_table("session_buddy_memory_vectors")
