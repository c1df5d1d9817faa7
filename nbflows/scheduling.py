"""The scheduler pass: upcoming runs of active schedules, Late runs, catch-up policies.

Idempotent per (deployment, schedule, time): a run's idempotency key is
`schedule:<schedule id>:<time>`, unique in the store, and inserts that collide are ignored, so
restarts and several servers never create duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session, selectinload

from .flow_runs import run_name, transition
from .states import StateType
from .store import tables as t

HORIZON = timedelta(hours=1)
MIN_RUNS = 3
MAX_RUNS = 100
LATE_AFTER = timedelta(seconds=15)
FLOW_RUNS = cast(Table, t.FlowRun.__table__)


@dataclass
class PassResult:
    created: int = 0
    late: int = 0
    skipped: int = 0
    pools: set[str] | None = None


def schedule_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Create the upcoming runs of every active schedule that is not filled far enough ahead."""
    from .schedules import parse_schedule

    now = now or t.utcnow()
    horizon_end = now + HORIZON
    result = PassResult(pools=set())
    rows = s.scalars(
        select(t.DeploymentSchedule)
        .join(t.Deployment)
        .where(
            t.DeploymentSchedule.active.is_(True),
            t.Deployment.paused.is_(False),
            or_(
                t.DeploymentSchedule.scheduled_until.is_(None),
                t.DeploymentSchedule.scheduled_until < now + HORIZON / 2,
            ),
        )
        .options(selectinload(t.DeploymentSchedule.deployment))
    ).all()
    new_runs: list[dict[str, Any]] = []
    for row in rows:
        d = row.deployment
        schedule = parse_schedule(row.schedule)
        start = max(row.scheduled_until or now, now)
        times = schedule.next_times(start, horizon_end, limit=MAX_RUNS)
        if len(times) < MIN_RUNS and (row.scheduled_until is None or row.scheduled_until <= now):
            times = schedule.next_times(start, now + timedelta(days=366), limit=MIN_RUNS)
        if not times:
            row.scheduled_until = horizon_end
            continue
        defaults = {
            k: v.get("default") for k, v in d.parameter_schema.get("properties", {}).items()
        }
        for when in times:
            new_runs.append(
                {
                    "id": t.new_id(),
                    "name": run_name(d.flow_name),
                    "flow_name": d.flow_name,
                    "kind": "deployment",
                    "deployment_id": d.id,
                    "work_pool_id": d.work_pool_id,
                    "work_queue_id": d.work_queue_id,
                    "state_type": StateType.SCHEDULED.value,
                    "state_name": "Scheduled",
                    "state_timestamp": now,
                    "parameters": {**defaults, **d.parameters},
                    "job_variables": {},
                    "attempt": 1,
                    "max_retries": d.retries,
                    "retry_delay": d.retry_delay,
                    "expected_start_time": when,
                    "idempotency_key": f"schedule:{row.id}:{when.isoformat()}",
                    "tags": [*d.tags, "auto-scheduled"],
                    "log_count": 0,
                    "logs_truncated": False,
                    "has_notebook": False,
                    "created": now,
                    "updated": now,
                }
            )
        row.scheduled_until = max(times[-1], horizon_end)
        result.pools.add(d.work_pool_id)  # type: ignore[union-attr]
    if new_runs:
        result.created = _insert_ignoring_duplicates(s, new_runs)
    return result


def _insert_ignoring_duplicates(s: Session, rows: list[dict[str, Any]]) -> int:
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(FLOW_RUNS).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(FLOW_RUNS).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    stmt = stmt.returning(FLOW_RUNS.c.id)
    created = 0
    for start in range(0, len(rows), 500):
        created += len(s.execute(stmt, rows[start : start + 500]).all())
    return created


def mark_late_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Scheduled runs past their time become Late; deployments' catch-up policies then apply."""
    now = now or t.utcnow()
    result = PassResult(pools=set())
    late = s.scalars(
        select(t.FlowRun)
        .where(
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.state_name == "Scheduled",
            t.FlowRun.expected_start_time < now - LATE_AFTER,
        )
        .order_by(t.FlowRun.expected_start_time)
    ).all()
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
