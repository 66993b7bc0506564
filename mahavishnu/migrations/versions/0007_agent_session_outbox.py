"""the outbox of agent runs to Session-Buddy

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:00:00

Each finished run of the `agent` workflow is queued here in the transaction that records its
end; the pusher writes it to Session-Buddy as a session (the prompt and the output tail as
memories) and deletes the entry once it is there. A new table: nothing existing changes, and
runs finished before this revision are not written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mahavishnu.platform.sqltypes import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_session_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["repo_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agent_session_outbox_run_id", "agent_session_outbox", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_session_outbox_run_id", table_name="agent_session_outbox")
    op.drop_table("agent_session_outbox")
