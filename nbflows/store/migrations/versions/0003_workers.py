"""workers: online deadline and problem; run fencing tokens and heartbeats; log sequence numbers

Revision ID: 0003_workers
Revises: 0002_scheduling
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_workers"
down_revision = "0002_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch_op:
        batch_op.add_column(sa.Column("online_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("problem", sa.Text(), nullable=True))
        batch_op.create_index("ix_workers_online_until", ["online_until"], unique=False)
    # Rows of earlier versions count as offline from their last beat (a live worker beats again
    # within seconds).
    op.execute("UPDATE workers SET online_until = last_heartbeat")
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.add_column(sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("heartbeat_deadline", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_runs_heartbeat_deadline", ["heartbeat_deadline"], unique=False)
    with op.batch_alter_table("logs") as batch_op:
        batch_op.add_column(sa.Column("fence", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ux_logs_run_fence_seq", ["flow_run_id", "fence", "seq"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("logs") as batch_op:
        batch_op.drop_index("ux_logs_run_fence_seq")
        batch_op.drop_column("seq")
        batch_op.drop_column("fence")
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.drop_index("ix_runs_heartbeat_deadline")
        batch_op.drop_column("heartbeat_deadline")
        batch_op.drop_column("fence")
    with op.batch_alter_table("workers") as batch_op:
        batch_op.drop_index("ix_workers_online_until")
        batch_op.drop_column("problem")
        batch_op.drop_column("online_until")
