"""storage: references to the files of runs kept in the result store; retention and exports
of deployments; project files of deployment versions

Revision ID: 0007_storage
Revises: 0006_pipelines

Executed notebooks stored before this revision stay in `flow_run_notebooks` and are read from
there (`flow_runs.read_notebook` looks in the result store first): moving them here would need
the server's result-store URL, which is a setting of the server and not known to a migration,
and would hold a server's start for as long as copying gigabytes takes. New notebooks go to the
store only; `nbflows flow-run prune` removes old runs from both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_storage"
down_revision = "0006_pipelines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_files",
        sa.Column("flow_run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["flow_run_id"], ["flow_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("flow_run_id", "kind", "name"),
    )
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("retention_days", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("retention_keep_last", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("exports", sa.JSON(), nullable=True))
    with op.batch_alter_table("deployment_versions") as batch_op:
        batch_op.add_column(sa.Column("files", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_versions") as batch_op:
        batch_op.drop_column("files")
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_column("exports")
        batch_op.drop_column("retention_keep_last")
        batch_op.drop_column("retention_days")
    op.drop_table("run_files")
