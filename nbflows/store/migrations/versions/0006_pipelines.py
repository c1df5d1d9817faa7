"""pipelines: run outputs, frozen pipeline definitions, the step runs of pipeline runs

Revision ID: 0006_pipelines
Revises: 0005_automations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pipelines"
down_revision = "0005_automations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.add_column(
            sa.Column("outputs", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.create_index("ix_runs_kind_state", ["kind", "state_type"], unique=False)
    op.create_table(
        "pipeline_versions",
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("deployment_id", "version"),
    )
    op.create_table(
        "pipeline_step_runs",
        sa.Column("pipeline_run_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=200), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("flow_run_id", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("repair", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["pipeline_run_id"], ["flow_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pipeline_run_id", "step", "item"),
    )
    op.create_index("ix_pipeline_steps_flow_run", "pipeline_step_runs", ["flow_run_id"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_steps_flow_run", table_name="pipeline_step_runs")
    op.drop_table("pipeline_step_runs")
    op.drop_table("pipeline_versions")
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.drop_index("ix_runs_kind_state")
        batch_op.drop_column("outputs")
