"""power: worker and run credentials (hashed tokens), encrypted secrets

Revision ID: 0004_power
Revises: 0003_workers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_power"
down_revision = "0003_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_credentials",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("pools", sa.JSON(), nullable=False),
        sa.Column("pool_types", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.DateTime(), nullable=True),
    )
    op.create_index(
        "ux_worker_credentials_token", "worker_credentials", ["token_hash"], unique=True
    )
    op.create_index("ix_worker_credentials_name", "worker_credentials", ["name"])
    op.create_table(
        "run_credentials",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "flow_run_id",
            sa.String(32),
            sa.ForeignKey("flow_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_run_credentials_run", "run_credentials", ["flow_run_id"])
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_index("ix_run_credentials_run", "run_credentials")
    op.drop_table("run_credentials")
    op.drop_index("ix_worker_credentials_name", "worker_credentials")
    op.drop_index("ux_worker_credentials_token", "worker_credentials")
    op.drop_table("worker_credentials")
