"""Work pools and their work queues."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nbflows.errors import Conflict, InvalidInput, NotFound
from nbflows.protocol import StateType
from nbflows.services.schemas.bodies import (
    WorkPoolCreate,
    WorkPoolUpdate,
    WorkQueueCreate,
    WorkQueueUpdate,
)
from nbflows.services.schemas.pools import WorkPoolReply
from nbflows.store import tables as t
from nbflows.workers import job_templates

DEFAULT_QUEUE = "default"
ACTIVE_STATES = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value)


def create_work_pool(s: Session, req: WorkPoolCreate) -> t.WorkPool:
    if req.type not in job_templates.pool_types():  # one type per worker entry point
        valid = ", ".join(job_templates.pool_types())
        raise InvalidInput(f"unknown work pool type '{req.type}'; valid types: {valid}")
    if s.scalar(select(t.WorkPool.id).where(t.WorkPool.name == req.name)):
        raise Conflict(f"a work pool named '{req.name}' exists already")
    template = (
        job_templates.validate_base_job_template(req.base_job_template)
        if req.base_job_template is not None
        else job_templates.default_base_job_template(req.type)
    )
    pool = t.WorkPool(
        name=req.name,
        type=req.type,
        description=req.description,
        base_job_template=template,
        concurrency_limit=req.concurrency_limit,
        paused=req.paused,
    )
    pool.queues.append(t.WorkQueue(name=DEFAULT_QUEUE, priority=1))
    s.add(pool)
    s.flush()
    return pool


def get_work_pool(s: Session, name: str) -> t.WorkPool:
    pool = s.scalar(select(t.WorkPool).where(t.WorkPool.name == name))
    if pool is None:
        names = s.scalars(select(t.WorkPool.name).order_by(t.WorkPool.name)).all()
        known = (
            ", ".join(names) if names else "none yet (create one with `nbflows work-pool create`)"
        )
        raise NotFound(f"no work pool named '{name}'; work pools: {known}")
    return pool


def list_work_pools(s: Session) -> list[t.WorkPool]:
    return list(s.scalars(select(t.WorkPool).order_by(t.WorkPool.name)))


def update_work_pool(s: Session, name: str, req: WorkPoolUpdate) -> t.WorkPool:
    pool = get_work_pool(s, name)
    fields = req.model_dump(exclude_unset=True)
    if "base_job_template" in fields:
        if fields["base_job_template"] is None:
            fields["base_job_template"] = job_templates.default_base_job_template(pool.type)
        else:
            fields["base_job_template"] = job_templates.validate_base_job_template(
                fields["base_job_template"]
            )
    for key, value in fields.items():
        setattr(pool, key, value)
    s.flush()
    return pool


def delete_work_pool(s: Session, name: str) -> None:
    pool = get_work_pool(s, name)
    deployments = s.scalars(
        select(t.Deployment.flow_name + "/" + t.Deployment.name).where(
            t.Deployment.work_pool_id == pool.id
        )
    ).all()
    if deployments:
        raise Conflict(
            f"work pool '{name}' still has deployments: {', '.join(deployments)}; delete them first"
        )
    s.delete(pool)


def create_work_queue(s: Session, pool_name: str, req: WorkQueueCreate) -> t.WorkQueue:
    pool = get_work_pool(s, pool_name)
    if any(q.name == req.name for q in pool.queues):
        raise Conflict(f"work pool '{pool_name}' already has a queue named '{req.name}'")
    priority = req.priority
    if priority is None:
        priority = max((q.priority for q in pool.queues), default=0) + 1
    queue = t.WorkQueue(
        name=req.name,
        priority=priority,
        concurrency_limit=req.concurrency_limit,
        paused=req.paused,
        description=req.description,
    )
    pool.queues.append(queue)
    s.flush()
    return queue


def get_work_queue(s: Session, pool_name: str, name: str | None) -> t.WorkQueue:
    pool = get_work_pool(s, pool_name)
    name = name or DEFAULT_QUEUE
    for queue in pool.queues:
        if queue.name == name:
            return queue
    known = ", ".join(q.name for q in pool.queues)
    raise NotFound(f"work pool '{pool_name}' has no queue named '{name}'; its queues: {known}")


def update_work_queue(s: Session, pool_name: str, name: str, req: WorkQueueUpdate) -> t.WorkQueue:
    queue = get_work_queue(s, pool_name, name)
    for key, value in req.model_dump(exclude_unset=True).items():
        setattr(queue, key, value)
    s.flush()
    return queue


def delete_work_queue(s: Session, pool_name: str, name: str) -> None:
    queue = get_work_queue(s, pool_name, name)
    if queue.name == DEFAULT_QUEUE:
        raise Conflict("the 'default' queue of a work pool cannot be deleted")
    used = s.scalars(
        select(t.Deployment.flow_name + "/" + t.Deployment.name).where(
            t.Deployment.work_queue_id == queue.id
        )
    ).all()
    if used:
        raise Conflict(f"queue '{name}' is used by deployments: {', '.join(used)}")
    s.delete(queue)


def online_workers(s: Session, pool: t.WorkPool) -> list[t.Worker]:
    return list(
        s.scalars(
            select(t.Worker).where(
                t.Worker.work_pool_id == pool.id, t.Worker.online_until > t.utcnow()
            )
        )
    )


def work_pool_json(s: Session, pool: t.WorkPool) -> dict[str, Any]:
    running = s.scalar(
        select(func.count())
        .select_from(t.FlowRun)
        .where(t.FlowRun.work_pool_id == pool.id, t.FlowRun.state_type.in_(ACTIVE_STATES))
    )
    workers = online_workers(s, pool)
    # Workers that are online but cannot execute runs (their infrastructure is missing) do not
    # serve the pool; what they say is why it is not ready.
    online = sum(w.problem is None for w in workers)
    status = "PAUSED" if pool.paused else ("READY" if online else "NOT_READY")
    reason = None
    if status == "NOT_READY":
        problems = sorted({f"worker '{w.name}': {w.problem}" for w in workers if w.problem})
        reason = "; ".join(problems) or None
    return WorkPoolReply.serialise(
        pool,
        status=status,
        status_reason=reason,
        workers_online=online,
        running_runs=running or 0,
    )
