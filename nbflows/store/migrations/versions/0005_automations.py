"""automations: rules and the outbox of their deliveries

Revision ID: 0005_automations
Revises: 0004_power
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_automations"
down_revision = "0004_power"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("trigger_kind", sa.String(30), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("credentials", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_automations_kind", "automations", ["trigger_kind", "enabled"])
    op.create_table(
        "automation_deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "automation_id",
            sa.String(32),
            sa.ForeignKey("automations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("action_index", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(30), nullable=False),
        sa.Column("flow_run_id", sa.String(32), nullable=True),
        sa.Column("work_pool_id", sa.String(32), nullable=True),
        sa.Column("action_type", sa.String(30), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ux_deliveries_event",
        "automation_deliveries",
        ["automation_id", "event_key", "action_index"],
        unique=True,
    )
    op.create_index("ix_deliveries_due", "automation_deliveries", ["status", "next_attempt"])
    op.create_index("ix_deliveries_run", "automation_deliveries", ["flow_run_id", "created"])
    op.create_index(
        "ix_deliveries_automation", "automation_deliveries", ["automation_id", "created"]
    )


def downgrade() -> None:
    op.drop_table("automation_deliveries")
    op.drop_table("automations")
