"""The flow_runs indexes of migration 0008_speed, on SQLite and PostgreSQL: columns most runs
leave empty are indexed for the runs that set them only, the queries they serve still use
them, and the migration goes down and up again."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from nbflows.protocol import StateType
from nbflows.store import tables as t
from nbflows.store.db import MIGRATIONS, Database

PARTIAL = {
    "ix_runs_parent": "parent_run_id IS NOT NULL",
    "ix_runs_worker_state": "worker_name IS NOT NULL",
    "ix_runs_heartbeat_deadline": "heartbeat_deadline IS NOT NULL",
    "ix_runs_pipeline_state": "kind = 'pipeline'",
}


def index_definitions(db: Database) -> dict[str, str]:
    """Index name → its definition as the database keeps it (lower case, spaces squeezed)."""
    if db.dialect == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'flow_runs'"
    else:
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'flow_runs'"
    with db.engine.connect() as c:
        return {
            name: " ".join((definition or "").lower().replace('"', "").split())
            for name, definition in c.execute(text(sql))
        }


def test_indexes_of_columns_most_runs_leave_empty_hold_only_the_runs_that_set_them(
    database: Database,
) -> None:
    defined = index_definitions(database)
    for name, where in PARTIAL.items():
        assert name in defined, sorted(defined)
        assert f"where {where.lower()}" in defined[name].replace("(", "").replace(")", "").replace(
            "::text", ""
        )
    assert "ix_runs_kind_state" not in defined
    assert (
        "ux_runs_idempotency_key" in defined and "where" not in defined["ux_runs_idempotency_key"]
    )


def plan(db: Database, query: str, params: dict[str, Any]) -> str:
    with db.engine.connect() as c:
        if db.dialect == "sqlite":
            rows = c.execute(text(f"EXPLAIN QUERY PLAN {query}"), params).all()
            return " ".join(str(row[-1]) for row in rows)
        c.execute(text("SET enable_seqscan = off"))  # an empty table: make the planner show
        return " ".join(row[0] for row in c.execute(text(f"EXPLAIN {query}"), params))


def test_the_queries_of_the_partial_indexes_still_use_them(database: Database) -> None:
    for query, params, index in [
        ("SELECT id FROM flow_runs WHERE parent_run_id = :p", {"p": "x"}, "ix_runs_parent"),
        (
            "SELECT id FROM flow_runs WHERE worker_name = :w AND state_type = :s",
            {"w": "w", "s": "RUNNING"},
            "ix_runs_worker_state",
        ),
        (
            "SELECT id FROM flow_runs WHERE heartbeat_deadline < :now",
            {"now": "2026-01-01 00:00:00"},
            "ix_runs_heartbeat_deadline",
        ),
    ]:
        assert index in plan(database, query, params), (query, plan(database, query, params))
    # The scheduler's query of pipeline runs, as SQLAlchemy renders it.
    compiled = (
        select(t.FlowRun.id)
        .where(
            t.FlowRun.kind == text("'pipeline'"),
            t.FlowRun.state_type.in_([StateType.SCHEDULED.value]),
        )
        .compile(database.engine, compile_kwargs={"literal_binds": True})
    )
    assert "ix_runs_pipeline_state" in plan(database, str(compiled), {})


def test_the_speed_migration_goes_down_and_up_again(database: Database) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007_storage")
    defined = index_definitions(database)
    assert "ix_runs_kind_state" in defined and "ix_runs_pipeline_state" not in defined
    assert "where" not in defined["ix_runs_parent"]
    database.migrate()
    assert set(PARTIAL) <= set(index_definitions(database))
