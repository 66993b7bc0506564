"""outcomes: one row per repository run of each workflow a Mahavishnu finished

Revision ID: akosha_0002
Revises: akosha_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "akosha_0002"
down_revision = "akosha_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "akosha_outcomes",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("repo", sa.String(length=100), nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "workflow_id", "repo"),
    )
    op.create_index("ix_akosha_outcomes_finished", "akosha_outcomes", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_akosha_outcomes_finished", table_name="akosha_outcomes")
    op.drop_table("akosha_outcomes")
