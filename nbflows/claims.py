"""Handing due runs to workers: atomic, in queue priority order, within concurrency limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import job_templates
from .deployments import deployment_json
from .errors import NotFound
from .flow_runs import run_json
from .states import StateType
from .store import tables as t
from .work_pools import ACTIVE_STATES, get_work_pool


def claim_next_runs(
    s: Session, pool_name: str, worker: str, queues: list[str] | None, limit: int
) -> list[dict[str, Any]]:
    """Move up to `limit` due SCHEDULED runs to PENDING for `worker`; return what it needs to run them.

    The UPDATE ... WHERE state='SCHEDULED' with a row-count check makes a claim atomic on SQLite;
    PostgreSQL additionally skips rows another transaction holds (FOR UPDATE SKIP LOCKED).
    """
    pool = get_work_pool(s, pool_name)
    if pool.paused:
        return []
    now = t.utcnow()
    room = limit
    if pool.concurrency_limit is not None:
        room = min(room, pool.concurrency_limit - _active(s, t.FlowRun.work_pool_id == pool.id))
    chosen = _queues(pool, queues)
    claimed: list[t.FlowRun] = []
    for queue in chosen:
        if room <= 0:
            break
        take = room
        if queue.concurrency_limit is not None:
            take = min(
                take, queue.concurrency_limit - _active(s, t.FlowRun.work_queue_id == queue.id)
            )
        if take <= 0:
            continue
        for run in _candidates(s, queue, now, take):
            version = s.scalar(
                select(t.Deployment.version).where(t.Deployment.id == run.deployment_id)
            )
            result = s.execute(
                update(t.FlowRun)
                .where(t.FlowRun.id == run.id, t.FlowRun.state_type == StateType.SCHEDULED.value)
                .values(
                    state_type=StateType.PENDING.value,
                    state_name="Pending",
                    state_message=f"claimed by worker '{worker}'",
                    state_timestamp=now,
                    worker_name=worker,
                    deployment_version=version,
                    updated=now,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                s.refresh(run)
                claimed.append(run)
                room -= 1
    return [_claimed_json(s, pool, run) for run in claimed]


def _queues(pool: t.WorkPool, names: list[str] | None) -> list[t.WorkQueue]:
    queues = [q for q in pool.queues if not q.paused]
    if names:
        known = {q.name for q in pool.queues}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise NotFound(
                f"work pool '{pool.name}' has no queue {', '.join(unknown)}; "
                f"its queues: {', '.join(sorted(known))}"
            )
        queues = [q for q in queues if q.name in names]
    return sorted(queues, key=lambda q: (q.priority, q.created))


def _active(s: Session, where: Any) -> int:
    count = s.scalar(
        select(func.count())
        .select_from(t.FlowRun)
        .where(where, t.FlowRun.state_type.in_(ACTIVE_STATES))
    )
    return int(count or 0)


def _candidates(s: Session, queue: t.WorkQueue, now: datetime, take: int) -> list[t.FlowRun]:
    query = (
        select(t.FlowRun)
        .join(t.Deployment, t.Deployment.id == t.FlowRun.deployment_id)
        .where(
            t.FlowRun.work_pool_id == queue.work_pool_id,
            t.FlowRun.work_queue_id == queue.id,
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.expected_start_time <= now,
            t.Deployment.paused.is_(False),
        )
        .order_by(t.FlowRun.expected_start_time)
        .limit(take)
    )
    if s.bind is not None and s.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=t.FlowRun)
    return list(s.scalars(query))


def next_due_time(s: Session, pool_name: str) -> datetime | None:
    """When the pool's earliest future SCHEDULED run becomes due (for long-poll wake-ups)."""
    pool = get_work_pool(s, pool_name)
    return s.scalar(
        select(func.min(t.FlowRun.expected_start_time)).where(
            t.FlowRun.work_pool_id == pool.id, t.FlowRun.state_type == StateType.SCHEDULED.value
        )
    )


def _claimed_json(s: Session, pool: t.WorkPool, run: t.FlowRun) -> dict[str, Any]:
    deployment = s.get(t.Deployment, run.deployment_id) if run.deployment_id else None
    layers = [deployment.job_variables if deployment else None, run.job_variables]
    variables = job_templates.merge_job_variables(pool.base_job_template, *layers)
    return {
        "flow_run": run_json(s, run),
        "deployment": deployment_json(deployment) if deployment else None,
        "job_variables": variables,
        "job_configuration": job_templates.render_job_configuration(
            pool.base_job_template, variables
        ),
    }
