"""PostgreSQL stores filled in SQL (generate_series), for the scale benchmarks on PostgreSQL.

Rows are made by the database itself: tens of millions of runs in minutes, where inserting
them from Python would take an hour. Ids are md5 digests of a row number (32 hex digits, the
shape of `t.new_id`), so a deployment's id is computable from its number.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from nbflows.store import tables as t
from nbflows.store.db import Database

from .fixtures import TRIVIAL, add_pool

NOW = "(now() at time zone 'utc')"


def pool(db: Database) -> tuple[str, str]:
    """A process pool named "bench" with its default queue: (pool id, queue id)."""
    with db.session() as s:
        pool = add_pool(s)
        return pool.id, pool.queues[0].id


def deployments(db: Database, count: int, crons: list[str]) -> tuple[str, str]:
    """`count` deployments, each with one cron schedule taken in turn from `crons`; deployment
    number i (1-based) has the id md5('d' || i). Returns (pool id, queue id)."""
    pool_id, queue_id = pool(db)
    schedules = [
        json.dumps({"kind": "cron", "cron": c, "timezone": "UTC", "day_or": True, "active": True})
        for c in crons
    ]
    schema = json.dumps({"type": "object", "properties": {"x": {"type": "integer", "default": 1}}})
    with db.session() as s:
        s.execute(
            text(
                "INSERT INTO deployments (id, flow_name, name, kind, entrypoint, path, working_dir,"
                " work_pool_id, work_queue_id, parameters, parameter_schema, job_variables,"
                " paused, version, tags, retries, retry_delay, catchup, created, updated)"
                " SELECT md5('d' || i), 'trivial', 'd' || i, 'notebook', 'trivial.ipynb', :path,"
                " :wd, :pool, :queue, '{}', CAST(:schema AS json), '{}', false, 1, '[]', 0, 0.0,"
                f" 'latest', {NOW}, {NOW} FROM generate_series(1, :n) AS i"
            ),
            {
                "path": str(TRIVIAL),
                "wd": str(TRIVIAL.parent),
                "pool": pool_id,
                "queue": queue_id,
                "schema": schema,
                "n": count,
            },
        )
        s.execute(
            text(
                "INSERT INTO deployment_versions (deployment_id, version, notebook, created)"
                f" SELECT md5('d' || i), 1, :nb, {NOW} FROM generate_series(1, :n) AS i"
            ),
            {"nb": TRIVIAL.read_text(), "n": count},
        )
        s.execute(
            text(
                "INSERT INTO deployment_schedules (id, deployment_id, schedule, active, created)"
                " SELECT md5('s' || i), md5('d' || i),"
                f" CAST((CAST(:schedules AS text[]))[1 + i % :k] AS json), true, {NOW}"
                " FROM generate_series(1, :n) AS i"
            ),
            {"schedules": schedules, "k": len(schedules), "n": count},
        )
    with db.engine.connect() as c:
        c.execute(text("ANALYZE"))
        c.commit()
    return pool_id, queue_id


STATES = ["COMPLETED"] * 8 + ["FAILED", "CRASHED"]


def runs(
    db: Database, target: int, budget: float, deployment_count: int = 100, chunk: int = 1_000_000
) -> tuple[int, list[str], float]:
    """Finished runs over `deployment_count` deployments, in chunks until `target` runs or
    `budget` seconds of filling: (runs stored, deployment ids, seconds spent)."""
    pool_id, queue_id = deployments(db, deployment_count, ["0 6 * * *"])
    start = t.utcnow().replace(tzinfo=None) - timedelta(seconds=30 * target)
    began = time.perf_counter()
    stored = 0
    insert = text(
        "INSERT INTO flow_runs (id, name, flow_name, kind, deployment_id, deployment_version,"
        " work_pool_id, work_queue_id, state_type, state_name, state_timestamp, parameters,"
        " job_variables, attempt, max_retries, retry_delay, expected_start_time, start_time,"
        " end_time, worker_name, tags, log_count, logs_truncated, has_notebook, fence, outputs,"
        " created, updated)"
        " SELECT md5('r' || i), 'trivial-' || i, 'trivial', 'deployment',"
        " md5('d' || (1 + i % :deps)), 1, :pool, :queue, st, initcap(st), ts,"
        " json_build_object('x', i), '{}', 1, 0, 0.0, ts, ts, ts + interval '1 second', 'w',"
        " '[]', 0, false, false, 0, '{}', ts, ts"
        " FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS i,"
        " LATERAL (SELECT (CAST(:states AS text[]))[1 + (i * 7) % 10] AS st,"
        " CAST(:start AS timestamp) + i * interval '30 seconds' AS ts) AS x"
    )
    # Indexes and constraints (primary key and foreign keys included) are built once after the
    # fill: far faster than updating eleven indexes and firing three foreign-key triggers row
    # by row. The budget covers the fill; rebuilding them is timed in the total.
    with db.session() as s:
        dropped = _drop_indexes_and_constraints(s)
    while stored < target and time.perf_counter() - began < budget:
        n = min(chunk, target - stored)
        with db.session() as s:
            s.execute(text("SET LOCAL synchronous_commit = off"))
            s.execute(
                insert,
                {
                    "deps": deployment_count,
                    "pool": pool_id,
                    "queue": queue_id,
                    "states": STATES,
                    "start": start,
                    "a": stored + 1,
                    "b": stored + n,
                },
            )
        stored += n
    with db.engine.connect() as c:
        c = c.execution_options(isolation_level="AUTOCOMMIT")
        c.execute(text("SET maintenance_work_mem = '512MB'"))
        for statement in dropped:
            c.execute(text(statement))
        c.execute(text("VACUUM ANALYZE flow_runs"))  # hint bits and statistics, as an old table
    with db.session() as s:
        ids = list(s.scalars(text("SELECT id FROM deployments ORDER BY name")))
    return stored, ids, time.perf_counter() - began


def _drop_indexes_and_constraints(s: Any) -> list[str]:
    """Drop flow_runs' indexes, its primary key and the foreign keys from and to it; return the
    statements that make them again, in an order that works (primary key first)."""
    constraints = list(
        s.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype"
                " FROM pg_constraint WHERE conrelid = 'flow_runs'::regclass"
                " OR confrelid = 'flow_runs'::regclass"
            )
        )
    )
    indexes = list(
        s.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'flow_runs'"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        )
    )
    foreign = [c for c in constraints if c[3] == "f"]
    keys = [c for c in constraints if c[3] != "f"]
    for table, name, _, _ in foreign + keys:
        s.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        s.execute(text(f'DROP INDEX "{name}"'))
    return [
        *(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {d}' for table, name, d, _ in keys),
        *(definition for _, definition in indexes),
        *(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {d}' for table, name, d, _ in foreign),
    ]
