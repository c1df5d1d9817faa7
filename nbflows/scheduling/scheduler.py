"""The scheduler pass: upcoming runs of active schedules, Late runs, catch-up policies.

Idempotent per (deployment, schedule, time): a run's idempotency key is
`schedule:<schedule id>:<time>`, unique in the store, and inserts that collide are ignored, so
restarts and several servers never create duplicates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, Text, or_, select
from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput
from nbflows.notebooks.parameters import run_parameters
from nbflows.protocol import StateType
from nbflows.scheduling.run_inserts import insert_ignoring_duplicates, mark_filled
from nbflows.services.flow_runs import transition
from nbflows.store import tables as t

HORIZON = timedelta(hours=1)
MIN_RUNS = 1
MAX_RUNS = 100
LATE_AFTER = timedelta(seconds=15)
#: Default floor on schedule frequency, seconds (the server's `min_schedule_interval`).
MIN_INTERVAL = 10.0
MIN_INTERVAL_SETTING = (
    "c.NBFlowsExtension.min_schedule_interval (env NBFLOWS_MIN_SCHEDULE_INTERVAL; 0 turns it off)"
)
FLOW_RUNS = cast(Table, t.FlowRun.__table__)
SCHEDULES = cast(Table, t.DeploymentSchedule.__table__)
DEPLOYMENTS = cast(Table, t.Deployment.__table__)


@dataclass
class PassResult:
    created: int = 0
    late: int = 0
    skipped: int = 0
    pools: set[str] | None = None


def check_frequency(schedules: list[dict[str, Any]], minimum: float) -> None:
    """InvalidInput (422) for a schedule whose runs can come closer than `minimum` seconds."""
    from nbflows.scheduling.schedules import parse_schedule, shortest_gap

    if minimum <= 0:
        return
    for spec in schedules:
        schedule = parse_schedule(spec)
        gap = shortest_gap(schedule)
        if gap is not None and gap.total_seconds() < minimum:
            raise InvalidInput(
                f"schedule {schedule.describe()} runs more often than this server allows: its "
                f"runs can be {gap.total_seconds():g} s apart, the minimum is {minimum:g} s. "
                f"Schedule it less often, or change the server's minimum: {MIN_INTERVAL_SETTING}",
                field="schedules",
            )


def schedule_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Create the upcoming runs of every active schedule that is not filled far enough ahead.

    Written with Core rows rather than ORM objects: a pass over 10,000 schedules must stay
    well under a second, and identical schedules are parsed and expanded once.
    """
    from nbflows.scheduling.schedules import parse_schedule

    now = now or t.utcnow()
    horizon_end = now + HORIZON
    result = PassResult(pools=set())
    sch, dep = SCHEDULES, DEPLOYMENTS
    rows = s.execute(
        select(
            sch.c.id,
            sch.c.schedule.cast(Text),
            sch.c.scheduled_until,
            dep.c.id,
            dep.c.flow_name,
            dep.c.work_pool_id,
            dep.c.work_queue_id,
            dep.c.parameters.cast(Text),
            dep.c.retries,
            dep.c.retry_delay,
            dep.c.tags.cast(Text),
            dep.c.kind,
        )
        .join(dep, dep.c.id == sch.c.deployment_id)
        .where(
            sch.c.active.is_(True),
            dep.c.paused.is_(False),
            or_(sch.c.scheduled_until.is_(None), sch.c.scheduled_until < now + HORIZON / 2),
        )
    ).all()
    # JSON is read as text and decoded once per distinct text: deployments share schedules,
    # parameters and tags far more often than not. Decoded values are shared, never mutated.
    decoded: dict[str | None, Any] = {None: None}
    parsed: dict[str, Any] = {}
    expanded: dict[tuple[str, datetime], list[datetime]] = {}
    # A run is (its deployment's shared columns, id, name, time, idempotency key).
    new_runs: list[tuple[dict[str, Any], str, str, datetime, str]] = []
    # Schedules filled up to the same time (most: the horizon) are updated by one statement.
    filled: dict[datetime, list[str]] = {}
    # The columns every new run shares, whatever its deployment.
    shared = {
        "state_type": StateType.SCHEDULED.value,
        "state_name": "Scheduled",
        "state_timestamp": now,
        "job_variables": {},
        "attempt": 1,
        "log_count": 0,
        "logs_truncated": False,
        "has_notebook": False,
        "outputs": {},
        "created": now,
        "updated": now,
    }
    run_tags_of: dict[str | None, list[Any]] = {}
    parameters_of: dict[str | None, dict[str, Any]] = {}
    new_ids = _ids()
    stamps_of: dict[int, list[str]] = {}
    for (
        sid,
        text,
        until,
        dep_id,
        flow,
        pool_id,
        queue_id,
        params_text,
        retries,
        delay,
        tags_text,
        dep_kind,
    ) in rows:
        for value in (params_text, tags_text):
            if value not in decoded:
                decoded[value] = json.loads(value)
        if text not in parsed:
            parsed[text] = parse_schedule(json.loads(text))
        start = max(until or now, now)
        times = expanded.get((text, start))
        if times is None:
            times = _upcoming(
                parsed[text], start, now, horizon_end, first=until is None or until <= now
            )
            expanded[(text, start)] = times
        # Runs now exist up to the horizon, or up to the last one when MAX_RUNS cut them short.
        if not times:
            filled_to = horizon_end
        elif len(times) >= MAX_RUNS:
            filled_to = times[-1]
        else:
            filled_to = max(times[-1], horizon_end)
        filled.setdefault(filled_to, []).append(sid)
        if not times:
            continue
        parameters = parameters_of.get(params_text)
        if parameters is None:
            parameters = parameters_of[params_text] = run_parameters(decoded[params_text], None)
        run_tags = run_tags_of.get(tags_text)
        if run_tags is None:
            run_tags = run_tags_of[tags_text] = [*(decoded[tags_text] or []), "auto-scheduled"]
        # A pipeline's run is a parent no worker claims: the pass itself starts its steps.
        pipeline = dep_kind == "pipeline"
        if pipeline:
            pool_id = queue_id = None
        # The columns this deployment's runs share, built once and shared by its rows.
        common = {
            "flow_name": flow,
            "kind": "pipeline" if pipeline else "deployment",
            "deployment_id": dep_id,
            "work_pool_id": pool_id,
            "work_queue_id": queue_id,
            "parameters": parameters,
            "max_retries": retries,
            "retry_delay": delay,
            "tags": run_tags,
        }
        key_prefix = f"schedule:{sid}:"
        stamps = stamps_of.get(id(times))
        if stamps is None:  # `times` lists are shared by every schedule with the same expansion
            stamps = stamps_of[id(times)] = [when.isoformat() for when in times]
        for when, stamp in zip(times, stamps, strict=True):
            run_id = next(new_ids)
            new_runs.append((common, run_id, f"{flow}-{run_id[:6]}", when, key_prefix + stamp))
        if pool_id is not None:
            result.pools.add(pool_id)  # type: ignore[union-attr]
    if new_runs:
        result.created = insert_ignoring_duplicates(s, shared, new_runs)
    mark_filled(s, filled)
    return result


def _ids(batch: int = 4096) -> Iterator[str]:
    """New run ids as `t.new_id` makes them, drawn from the OS's random source a batch at a time."""
    while True:
        digits = os.urandom(16 * batch).hex()
        for start in range(0, len(digits), 32):
            yield digits[start : start + 32]


def _upcoming(
    schedule: Any, start: datetime, now: datetime, end: datetime, first: bool
) -> list[datetime]:
    times: list[datetime] = schedule.next_times(start, end, limit=MAX_RUNS)
    if len(times) < MIN_RUNS and first:
        times = schedule.next_times(start, now + timedelta(days=366), limit=MIN_RUNS)
    return times


def advance_pipelines(s: Session, now: datetime | None = None) -> tuple[set[str], set[str]]:
    """Start the steps of pipeline runs whose upstream steps ended (see
    `nbflows.pipelines.advance`); returns the ids of pools given new runs and the ids of the
    pipeline runs whose state changed."""
    from nbflows.pipelines.advance import advance_pipeline_runs

    return advance_pipeline_runs(s, now)


def mark_late_runs(s: Session, now: datetime | None = None) -> PassResult:
    """Scheduled runs past their time become Late; deployments' catch-up policies then apply.

    A policy looks at all of a deployment's Late runs, not only those of this pass: without a
    worker, runs go late one pass at a time.
    """
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
    postgres = s.get_bind().dialect.name == "postgresql"
    if postgres:  # a run being claimed right now is skipped
        query = query.with_for_update(skip_locked=True)
    deployment_ids: set[str] = set()
    for run in s.scalars(query):
        transition(run, StateType.SCHEDULED, name="Late", message="past its scheduled start time")
        result.late += 1
        if run.deployment_id and (run.idempotency_key or "").startswith("schedule:"):
            deployment_ids.add(run.deployment_id)
    ids = sorted(deployment_ids)
    for start in range(0, len(ids), 500):
        result.skipped += _apply_catchup(s, ids[start : start + 500], postgres, result)
    return result


def _apply_catchup(
    s: Session, deployment_ids: list[str], postgres: bool, result: PassResult
) -> int:
    policies = {
        dep_id: (catchup, pool_id)
        for dep_id, catchup, pool_id in s.execute(
            select(t.Deployment.id, t.Deployment.catchup, t.Deployment.work_pool_id).where(
                t.Deployment.id.in_(deployment_ids), t.Deployment.catchup != "all"
            )
        )
    }
    if not policies:
        return 0
    query = (
        select(t.FlowRun)
        .where(
            t.FlowRun.deployment_id.in_(policies),
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.state_name == "Late",
            t.FlowRun.idempotency_key.like("schedule:%"),
        )
        .order_by(t.FlowRun.expected_start_time)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True)
    late: dict[str, list[t.FlowRun]] = {}
    for run in s.scalars(query):
        late.setdefault(run.deployment_id or "", []).append(run)
    skipped = 0
    for dep_id, runs in late.items():
        catchup, pool_id = policies[dep_id]
        if catchup == "skip":
            drop, why = runs, "it missed its time"
        else:
            drop, why = runs[:-1], "a later run of the deployment is late too"
        for run in drop:
            transition(
                run,
                StateType.CANCELLED,
                name="Skipped",
                message=f"skipped: {why} and the deployment's catch-up policy is '{catchup}'",
            )
            skipped += 1
        if drop:
            result.pools.add(pool_id)  # type: ignore[union-attr]
    return skipped
