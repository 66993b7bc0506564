"""the outbox of workflow outcomes to Akosha

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 05:00:00

Each closed workflow is queued here in the transaction that closes it; the pusher sends its
repositories' outcomes to Akosha and deletes the entry once Akosha accepted them. A new table:
nothing existing changes, and workflows closed before this revision are not sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "akosha_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=36), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_akosha_outbox_workflow_id", "akosha_outbox", ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_akosha_outbox_workflow_id", table_name="akosha_outbox")
    op.drop_table("akosha_outbox")
