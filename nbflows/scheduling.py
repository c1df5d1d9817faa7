"""The scheduler pass: upcoming runs of active schedules, Late runs, catch-up policies.

Idempotent per (deployment, schedule, time): a run's idempotency key is
`schedule:<schedule id>:<time>`, unique in the store, and inserts that collide are ignored, so
restarts and several servers never create duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from .flow_runs import transition
from .parameters import run_parameters
from .states import StateType
from .store import tables as t

HORIZON = timedelta(hours=1)
MIN_RUNS = 1
MAX_RUNS = 100
LATE_AFTER = timedelta(seconds=15)
FLOW_RUNS = cast(Table, t.FlowRun.__table__)
SCHEDULES = cast(Table, t.DeploymentSchedule.__table__)
DEPLOYMENTS = cast(Table, t.Deployment.__table__)


@dataclass
class PassResult:
    created: int = 0
    late: int = 0
    skipped: int = 0
    pools: set[str] | None = None


def schedule_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Create the upcoming runs of every active schedule that is not filled far enough ahead.

    Written with Core rows rather than ORM objects: a pass over 10,000 schedules must stay
    well under a second, and identical schedules are parsed and expanded once.
    """
    from .schedules import parse_schedule

    now = now or t.utcnow()
    horizon_end = now + HORIZON
    result = PassResult(pools=set())
    sch, dep = SCHEDULES, DEPLOYMENTS
    rows = s.execute(
        select(
            sch.c.id,
            sch.c.schedule,
            sch.c.scheduled_until,
            dep.c.id,
            dep.c.flow_name,
            dep.c.work_pool_id,
            dep.c.work_queue_id,
            dep.c.parameters,
            dep.c.retries,
            dep.c.retry_delay,
            dep.c.tags,
        )
        .join(dep, dep.c.id == sch.c.deployment_id)
        .where(
            sch.c.active.is_(True),
            dep.c.paused.is_(False),
            or_(sch.c.scheduled_until.is_(None), sch.c.scheduled_until < now + HORIZON / 2),
        )
    ).all()
    parsed: dict[str, Any] = {}
    expanded: dict[tuple[str, datetime], list[datetime]] = {}
    new_runs: list[dict[str, Any]] = []
    filled: list[dict[str, Any]] = []
    for (
        sid,
        spec,
        until,
        dep_id,
        flow,
        pool_id,
        queue_id,
        params,
        retries,
        delay,
        tags,
    ) in rows:
        text = json.dumps(spec, sort_keys=True)
        if text not in parsed:
            parsed[text] = parse_schedule(spec)
        start = max(until or now, now)
        times = expanded.get((text, start))
        if times is None:
            times = _upcoming(
                parsed[text], start, now, horizon_end, first=until is None or until <= now
            )
            expanded[(text, start)] = times
        filled.append({"sid": sid, "until": max(times[-1], horizon_end) if times else horizon_end})
        if not times:
            continue
        parameters = run_parameters(params, None)
        run_tags = [*(tags or []), "auto-scheduled"]
        no_job_variables: dict[str, Any] = {}
        for when in times:
            new_runs.append(
                {
                    "id": (run_id := t.new_id()),
                    "name": f"{flow}-{run_id[:6]}",
                    "flow_name": flow,
                    "kind": "deployment",
                    "deployment_id": dep_id,
                    "work_pool_id": pool_id,
                    "work_queue_id": queue_id,
                    "state_type": StateType.SCHEDULED.value,
                    "state_name": "Scheduled",
                    "state_timestamp": now,
                    "parameters": parameters,
                    "job_variables": no_job_variables,
                    "attempt": 1,
                    "max_retries": retries,
                    "retry_delay": delay,
                    "expected_start_time": when,
                    "idempotency_key": f"schedule:{sid}:{when.isoformat()}",
                    "tags": run_tags,
                    "log_count": 0,
                    "logs_truncated": False,
                    "has_notebook": False,
                    "created": now,
                    "updated": now,
                }
            )
        result.pools.add(pool_id)  # type: ignore[union-attr]
    if new_runs:
        result.created = _insert_ignoring_duplicates(s, new_runs)
    if filled:
        s.execute(
            update(sch)
            .where(sch.c.id == bindparam("sid"))
            .values(scheduled_until=bindparam("until")),
            filled,
        )
    return result


def _upcoming(
    schedule: Any, start: datetime, now: datetime, end: datetime, first: bool
) -> list[datetime]:
    times: list[datetime] = schedule.next_times(start, end, limit=MAX_RUNS)
    if len(times) < MIN_RUNS and first:
        times = schedule.next_times(start, now + timedelta(days=366), limit=MIN_RUNS)
    return times


def _insert_ignoring_duplicates(s: Session, rows: list[dict[str, Any]]) -> int:
    """Insert scheduled runs, skipping any whose idempotency key exists; return how many were new."""
    dialect = s.get_bind().dialect
    if dialect.name == "sqlite":
        return _sqlite_insert_or_ignore(s, rows)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    stmt = pg_insert(FLOW_RUNS).on_conflict_do_nothing(index_elements=["idempotency_key"])
    created = 0
    for start in range(0, len(rows), 5000):
        created += len(s.execute(stmt.returning(FLOW_RUNS.c.id), rows[start : start + 5000]).all())
    return created


def _sqlite_insert_or_ignore(s: Session, rows: list[dict[str, Any]]) -> int:
    """`INSERT OR IGNORE` through the driver with values converted once per distinct value.

    SQLAlchemy's per-row parameter processing (JSON dumps, datetime formatting) cost more than
    the insert itself for the tens of thousands of rows of a first pass; most of those values are
    shared between rows (a deployment's parameters, a schedule's times), so they are cached here.
    """
    dialect = s.get_bind().dialect
    columns = list(rows[0])
    processors = {name: FLOW_RUNS.c[name].type.bind_processor(dialect) for name in columns}
    caches: dict[str, dict[Any, Any]] = {name: {} for name in columns}

    def convert(name: str, value: Any) -> Any:
        process = processors[name]
        if process is None or value is None:
            return value
        # Rows share their dicts and lists (one per deployment), so identity is a sound key.
        key = id(value) if isinstance(value, (dict, list)) else value
        cache = caches[name]
        if key not in cache:
            cache[key] = process(value)
        return cache[key]

    sql = (
        f"INSERT OR IGNORE INTO {FLOW_RUNS.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    values = [tuple(convert(name, row[name]) for name in columns) for row in rows]
    cursor = s.connection().exec_driver_sql(sql, values)
    return max(cursor.rowcount, 0)


def mark_late_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Scheduled runs past their time become Late; deployments' catch-up policies then apply."""
    now = now or t.utcnow()
    result = PassResult(pools=set())
    query = (
        select(t.FlowRun)
        .where(
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.state_name == "Scheduled",
            t.FlowRun.expected_start_time < now - LATE_AFTER,
        )
        .order_by(t.FlowRun.expected_start_time)
    )
    if s.get_bind().dialect.name == "postgresql":  # a run being claimed right now is skipped
        query = query.with_for_update(skip_locked=True)
    late = s.scalars(query).all()
    by_deployment: dict[str, list[t.FlowRun]] = {}
    for run in late:
        transition(run, StateType.SCHEDULED, name="Late", message="past its scheduled start time")
        result.late += 1
        if (
            run.deployment_id
            and run.idempotency_key
            and run.idempotency_key.startswith("schedule:")
        ):
            by_deployment.setdefault(run.deployment_id, []).append(run)
    for deployment_id, runs in by_deployment.items():
        d = s.get(t.Deployment, deployment_id)
        if d is None or d.catchup == "all":
            continue
        drop = runs if d.catchup == "skip" else runs[:-1]
        for run in drop:
            transition(
                run,
                StateType.CANCELLED,
                message=f"skipped: missed its time and the deployment's catch-up policy is '{d.catchup}'",
            )
            result.skipped += 1
        result.pools.add(d.work_pool_id)  # type: ignore[union-attr]
    return result
