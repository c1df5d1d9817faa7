"""Handing due runs to workers: atomic, in queue priority order, within concurrency limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nbflows.errors import NotFound
from nbflows.protocol import StateType
from nbflows.services import credentials
from nbflows.services.flow_runs import runs_json
from nbflows.services.schemas.deployments import DeploymentReply
from nbflows.services.work_pools import ACTIVE_STATES, get_work_pool
from nbflows.store import tables as t
from nbflows.store.db import begin_write
from nbflows.workers import job_templates


def claim_next_runs(
    s: Session, pool_name: str, worker: str, queues: list[str] | None, limit: int
) -> list[dict[str, Any]]:
    """Move up to `limit` due SCHEDULED runs to PENDING for `worker`; return what it needs to run them.

    One `UPDATE ... WHERE id IN (...) AND state='SCHEDULED' RETURNING id` per queue makes the
    claim atomic: a run another worker took in the meantime is simply not returned. PostgreSQL
    additionally skips rows another transaction holds (FOR UPDATE SKIP LOCKED).
    """
    # Claims of one pool are serialized, so concurrency limits hold under concurrent claims.
    begin_write(s)
    pool = get_work_pool(s, pool_name)
    if pool.paused:
        return []
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(t.WorkPool.id).where(t.WorkPool.id == pool.id).with_for_update())
    now = t.utcnow()
    room = limit
    if pool.concurrency_limit is not None:
        room = min(room, pool.concurrency_limit - _active(s, t.FlowRun.work_pool_id == pool.id))
    claimed: list[str] = []
    for queue in _queues(pool, queues):
        if room <= 0:
            break
        take = room
        if queue.concurrency_limit is not None:
            take = min(
                take, queue.concurrency_limit - _active(s, t.FlowRun.work_queue_id == queue.id)
            )
        if take <= 0:
            continue
        candidates = _candidates(s, queue, now, take)
        if not candidates:
            continue
        won = s.execute(
            update(t.FlowRun)
            .where(t.FlowRun.id.in_(candidates), t.FlowRun.state_type == StateType.SCHEDULED.value)
            .values(
                state_type=StateType.PENDING.value,
                state_name="Pending",
                state_message=f"claimed by worker '{worker}'",
                state_timestamp=now,
                worker_name=worker,
                fence=t.FlowRun.fence + 1,  # a new fencing token for this claim
                deployment_version=select(t.Deployment.version)
                .where(t.Deployment.id == t.FlowRun.deployment_id)
                .scalar_subquery(),
                updated=now,
            )
            .returning(t.FlowRun.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(won.scalars())
        claimed.extend(ids)
        room -= len(ids)
    return _claimed_json(s, pool, claimed)


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


def _candidates(s: Session, queue: t.WorkQueue, now: datetime, take: int) -> list[str]:
    query = (
        select(t.FlowRun.id)
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
    # Only future runs: a due run that cannot be claimed (paused, at a concurrency limit) is
    # waited for through notifications, not by polling the store.
    return s.scalar(
        select(func.min(t.FlowRun.expected_start_time)).where(
            t.FlowRun.work_pool_id == pool.id,
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.expected_start_time > t.utcnow(),
        )
    )


def _claimed_json(s: Session, pool: t.WorkPool, run_ids: list[str]) -> list[dict[str, Any]]:
    """What workers need per run; deployments and merged job variables computed once per batch."""
    if not run_ids:
        return []
    runs = list(
        s.scalars(
            select(t.FlowRun)
            .where(t.FlowRun.id.in_(run_ids))
            .execution_options(populate_existing=True)
        )
    )
    runs.sort(key=lambda r: run_ids.index(r.id))
    deps: dict[str, t.Deployment] = {
        d.id: d
        for d in s.scalars(
            select(t.Deployment).where(t.Deployment.id.in_({r.deployment_id for r in runs}))
        )
    }
    dep_json = {dep_id: DeploymentReply.serialise(d) for dep_id, d in deps.items()}
    merged: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    out = []
    for run, body in zip(runs, runs_json(s, runs), strict=True):
        deployment = deps.get(run.deployment_id or "")
        key = run.deployment_id or ""
        if run.job_variables or key not in merged:
            layers = [deployment.job_variables if deployment else None, run.job_variables]
            variables = job_templates.merge_job_variables(pool.base_job_template, *layers)
            rendered = job_templates.render_job_configuration(pool.base_job_template, variables)
            if not run.job_variables:
                merged[key] = (variables, rendered)
        else:
            variables, rendered = merged[key]
        out.append(
            {
                "flow_run": body,
                # Required on the worker's reports: they are refused once the run is not its own.
                "fence": run.fence,
                "deployment": dep_json.get(key),
                "job_variables": variables,
                "job_configuration": rendered,
                "run_token": credentials.mint_run_credential(s, run),
            }
        )
    return out
