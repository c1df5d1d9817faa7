"""scheduling: idempotency keys unique per deployment; scheduled runs' times in the one format

Revision ID: 0002_scheduling
Revises: 0001
Create Date: 2026-11-29 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_scheduling"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Times the scheduler's raw SQLite insert wrote through the process's sqlite3 adapter
#: ('2026-11-29T20:44:30', or without microseconds), rewritten as SQLAlchemy stores them
#: ('2026-11-29 20:44:30.000000'): SQLite compares times as text.
_RUN_TIMES = ("expected_start_time", "state_timestamp", "created", "updated")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for column in _RUN_TIMES:
            op.execute(
                f"UPDATE flow_runs SET {column} = substr({column}, 1, 10) || ' ' || "
                f"substr({column}, 12, 8) || CASE WHEN length({column}) = 19 THEN '.000000' "
                f"ELSE substr({column}, 20) END "
                f"WHERE substr({column}, 11, 1) = 'T' OR length({column}) = 19"
            )
    unique = [
        c
        for c in sa.inspect(bind).get_unique_constraints("flow_runs")
        if c["column_names"] == ["idempotency_key"]
    ]
    if bind.dialect.name == "sqlite":
        # SQLite's constraint has no name: the table is rebuilt without it.
        convention = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
        with op.batch_alter_table("flow_runs", naming_convention=convention) as batch_op:
            if unique:
                batch_op.drop_constraint("uq_flow_runs_idempotency_key", type_="unique")
            batch_op.create_index(
                "ux_runs_idempotency_key", ["deployment_id", "idempotency_key"], unique=True
            )
    else:
        for constraint in unique:
            op.drop_constraint(constraint["name"] or "", "flow_runs", type_="unique")
        op.create_index(
            "ux_runs_idempotency_key",
            "flow_runs",
            ["deployment_id", "idempotency_key"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch_op:
        batch_op.drop_index("ux_runs_idempotency_key")
        batch_op.create_unique_constraint("uq_flow_runs_idempotency_key", ["idempotency_key"])
