"""Storing a scheduler pass: its new runs (duplicates ignored) and how far each schedule is filled.

A pass can create hundreds of thousands of runs (100,000 cron deployments: 175,000), so rows are
written in the cheapest form each database takes: on PostgreSQL, a few binary arrays per
statement and the columns every run shares as single values; on SQLite, tuples of values each
converted once. Every value is converted by its column's SQLAlchemy type, so times are stored
in the one format the store compares, never by a sqlite3 adapter another library registered
for the whole process (nbformat does, inside every Jupyter server).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Table, update
from sqlalchemy.orm import Session

from nbflows.store import tables as t
from nbflows.store.db import insert_or_ignore

FLOW_RUNS = cast(Table, t.FlowRun.__table__)
SCHEDULES = cast(Table, t.DeploymentSchedule.__table__)

#: A new run: (its deployment's columns, id, name, time, idempotency key). The first item is
#: one dict shared by all the runs of a deployment.
NewRun = tuple[dict[str, Any], str, str, datetime, str]
#: The columns that differ from run to run of one deployment, in the order of a run's tuple.
_VARYING = ("id", "name", "expected_start_time", "idempotency_key")
#: Runs per PostgreSQL statement: bounds the arrays held in memory at once.
PG_BATCH = 50_000


def insert_ignoring_duplicates(s: Session, shared: dict[str, Any], runs: list[NewRun]) -> int:
    """Insert scheduled runs, skipping any whose idempotency key exists; return how many were
    new. `shared` holds the columns every run has in common."""
    if not runs:
        return 0
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return _postgres_insert(s, shared, runs)
    if dialect == "sqlite":
        return _sqlite_insert(s, shared, runs)
    stmt = insert_or_ignore(s, FLOW_RUNS, t.RUN_KEY).returning(FLOW_RUNS.c.id)
    created = 0
    for start in range(0, len(runs), 5000):
        rows = [
            {**shared, **common, **dict(zip(_VARYING, varying, strict=True))}
            for common, *varying in runs[start : start + 5000]
        ]
        created += len(s.execute(stmt, rows).all())
    return created


def mark_filled(s: Session, filled: dict[datetime, list[str]]) -> None:
    """Record that the schedules `filled[time]` have runs up to `time`."""
    if s.get_bind().dialect.name == "postgresql":
        # One statement per distinct time (most schedules share one), the ids as one array.
        connection = s.connection()
        convert = _processor("scheduled_until", s, SCHEDULES)
        for filled_to, ids in filled.items():
            connection.exec_driver_sql(
                f"UPDATE {SCHEDULES.name} SET scheduled_until = %b WHERE id = ANY(%b)",
                (convert(filled_to) if convert else filled_to, ids),
            )
        return
    for filled_to, ids in filled.items():
        for start in range(0, len(ids), 500):
            s.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.id.in_(ids[start : start + 500]))
                .values(scheduled_until=filled_to)
            )


def _processor(name: str, s: Session, table: Table = FLOW_RUNS) -> Any:
    dialect = s.get_bind().dialect
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


def _postgres_insert(s: Session, shared: dict[str, Any], runs: list[NewRun]) -> int:
    """The insert on PostgreSQL: the runs as four arrays (index of their deployment's columns,
    id, time, key), each deployment's columns as one array per column, the shared columns as
    single values; rows are made by `unnest` and a join.

    A multi-row VALUES statement has tens of thousands of placeholders that the driver parses
    anew for every batch; arrays keep the statement short, and binary parameters (%b) spare
    the text quoting of every element. A deployment's columns are sent once, not once per run.
    """
    dialect = s.get_bind().dialect
    per_deployment = list(runs[0][0])

    def column(name: str) -> tuple[str, Any]:
        """The SQL type a column's values are sent as, and the function converting them."""
        column_type = FLOW_RUNS.c[name].type
        if isinstance(column_type, JSON):
            return "text", json.dumps  # made JSON by the SELECT below
        return column_type.compile(dialect), _processor(name, s)

    def as_json(name: str, value: str) -> str:
        return f"CAST({value} AS json)" if isinstance(FLOW_RUNS.c[name].type, JSON) else value

    shared_values = []
    for name, value in shared.items():
        _, process = column(name)
        shared_values.append(process(value) if process and value is not None else value)
    dep_types = [column(name) for name in per_deployment]
    # Per column, each distinct value converted once (dicts and lists, shared, by identity).
    converted: list[dict[Any, Any]] = [{} for _ in per_deployment]

    def stored(i: int, value: Any) -> Any:
        process = dep_types[i][1]
        if process is None or value is None:
            return value
        key = id(value) if isinstance(value, (dict, list)) else value
        cache = converted[i]
        if key not in cache:
            cache[key] = process(value)
        return cache[key]

    time_type, convert_time = column("expected_start_time")
    id_type = column("id")[0]
    key_type = column("idempotency_key")[0]
    dep_select = {name: as_json(name, f"d.{name}") for name in per_deployment}
    columns = [*shared, *per_deployment, "id", "name", "expected_start_time", "idempotency_key"]
    select_list = [
        *(as_json(name, "%b") for name in shared),
        *dep_select.values(),
        "r.id",
        "d.flow_name || '-' || left(r.id, 6)",
        "r.expected_start_time",
        "r.idempotency_key",
    ]
    dep_arrays = ", ".join(f"CAST(%b AS {kind}[])" for kind, _ in dep_types)
    sql = (
        f"WITH new AS (INSERT INTO {FLOW_RUNS.name} ({', '.join(columns)}) "
        f"SELECT {', '.join(select_list)} "
        f"FROM unnest(CAST(%b AS int4[]), CAST(%b AS {id_type}[]), CAST(%b AS {time_type}[]), "
        f"CAST(%b AS {key_type}[])) AS r(i, id, expected_start_time, idempotency_key) "
        f"JOIN unnest({dep_arrays}) WITH ORDINALITY AS d({', '.join(per_deployment)}, i) "
        f"ON d.i = r.i "
        f"ON CONFLICT ({', '.join(t.RUN_KEY)}) DO NOTHING RETURNING 1) SELECT count(*) FROM new"
    )
    connection = s.connection()
    created = 0
    times: dict[datetime, Any] = {}
    for start in range(0, len(runs), PG_BATCH):
        index_of: dict[int, int] = {}  # id of a deployment's columns → its 1-based position
        dep_values: list[list[Any]] = [[] for _ in per_deployment]
        positions, ids, whens, keys = [], [], [], []
        for common, run_id, _name, when, key in runs[start : start + PG_BATCH]:
            position = index_of.get(id(common))
            if position is None:
                position = index_of[id(common)] = len(index_of) + 1
                for i, name in enumerate(per_deployment):
                    dep_values[i].append(stored(i, common[name]))
            stored_when = times.get(when)
            if stored_when is None:
                stored_when = times[when] = convert_time(when) if convert_time else when
            positions.append(position)
            ids.append(run_id)
            whens.append(stored_when)
            keys.append(key)
        params = (*shared_values, positions, ids, whens, keys, *dep_values)
        created += connection.exec_driver_sql(sql, params).scalar_one()
    return created


def _sqlite_insert(s: Session, shared: dict[str, Any], runs: list[NewRun]) -> int:
    """The insert as driver SQL, each distinct value converted once by its column's type.

    Converting every value of every row (JSON dumps, time formatting) and SQLAlchemy's
    per-row parameter processing cost more than the insert itself for the tens of thousands of
    rows of a first pass: a deployment's columns are converted once, times once per distinct
    time, and the rows go to sqlite3's executemany as tuples.
    """
    per_deployment = list(runs[0][0])
    columns = [*shared, *per_deployment, *_VARYING]
    shared_values = []
    for name, value in shared.items():
        process = _processor(name, s)
        shared_values.append(process(value) if process and value is not None else value)
    processors = [_processor(name, s) for name in per_deployment]
    convert_time = _processor("expected_start_time", s)
    converted: dict[int, tuple[Any, ...]] = {}  # id of a deployment's columns → values
    times: dict[datetime, Any] = {}
    rows = []
    # Per column, each distinct value converted once (dicts and lists, shared, by identity).
    by_value: list[dict[Any, Any]] = [{} for _ in per_deployment]

    def convert(common: dict[str, Any]) -> tuple[Any, ...]:
        values = list(shared_values)
        for name, process, cache in zip(per_deployment, processors, by_value, strict=True):
            value = common[name]
            if process is None:
                values.append(value)
                continue
            key = id(value) if isinstance(value, (dict, list)) else value
            if key not in cache:
                cache[key] = process(value)
            values.append(cache[key])
        return tuple(values)

    for common, run_id, name, when, key in runs:
        values = converted.get(id(common))
        if values is None:
            values = converted[id(common)] = convert(common)
        stored_when = times.get(when)
        if stored_when is None:
            stored_when = times[when] = convert_time(when) if convert_time else when
        rows.append((*values, run_id, name, stored_when, key))
    sql = (
        f"INSERT INTO {FLOW_RUNS.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(t.RUN_KEY)}) DO NOTHING"
    )
    connection = s.connection()
    created = 0
    for start in range(0, len(rows), 5000):
        result = connection.exec_driver_sql(sql, rows[start : start + 5000])
        created += max(result.rowcount, 0)
    return created
