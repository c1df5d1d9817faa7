"""speed: flow_runs indexes on columns most runs leave empty hold only the runs that set them

Revision ID: 0008_speed
Revises: 0007_storage

Every new run paid an entry in the indexes of `parent_run_id`, `worker_name`,
`heartbeat_deadline` and of (kind, state_type), though only `%%flow` runs of a notebook run have
a parent, only claimed runs a worker, only heartbeating kernels' runs a deadline, and only the
pipeline runs are looked up by kind. As partial indexes, the 175,000 runs of a scheduler pass
over 100,000 deployments enter 7 indexes instead of 11. The queries these indexes serve either
compare the column (which implies it is not NULL) or name the pipeline kind literally.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_speed"
down_revision = "0007_storage"
branch_labels = None
depends_on = None

#: name → (columns, the rows it holds)
PARTIAL = {
    "ix_runs_parent": (["parent_run_id"], "parent_run_id IS NOT NULL"),
    "ix_runs_worker_state": (["worker_name", "state_type"], "worker_name IS NOT NULL"),
    "ix_runs_heartbeat_deadline": (["heartbeat_deadline"], "heartbeat_deadline IS NOT NULL"),
}


def upgrade() -> None:
    for name, (columns, where) in PARTIAL.items():
        op.drop_index(name, table_name="flow_runs")
        op.create_index(
            name,
            "flow_runs",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    op.drop_index("ix_runs_kind_state", table_name="flow_runs")
    pipelines = sa.text("kind = 'pipeline'")
    op.create_index(
        "ix_runs_pipeline_state",
        "flow_runs",
        ["state_type"],
        postgresql_where=pipelines,
        sqlite_where=pipelines,
    )


def downgrade() -> None:
    op.drop_index("ix_runs_pipeline_state", table_name="flow_runs")
    op.create_index("ix_runs_kind_state", "flow_runs", ["kind", "state_type"])
    for name, (columns, _) in PARTIAL.items():
        op.drop_index(name, table_name="flow_runs")
        op.create_index(name, "flow_runs", columns)
