"""Worker heartbeats, and what happens to the runs of a worker that stops sending them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .flow_runs import transition
from .schemas import HeartbeatRequest, iso
from .states import TERMINAL, StateType
from .store import tables as t
from .work_pools import ACTIVE_STATES, get_work_pool

DEFAULT_INTERVAL = 5.0
MISSED_BEATS = 3


def heartbeat(s: Session, pool_name: str, req: HeartbeatRequest) -> dict[str, Any]:
    pool = get_work_pool(s, pool_name)
    worker = s.get(t.Worker, (pool.id, req.name))
    if worker is None:
        worker = t.Worker(work_pool_id=pool.id, name=req.name)
        s.add(worker)
    worker.last_heartbeat = t.utcnow()
    worker.heartbeat_interval = req.heartbeat_interval or DEFAULT_INTERVAL
    worker.limit = req.limit
    cancel = set(
        s.scalars(
            select(t.FlowRun.id).where(
                t.FlowRun.worker_name == req.name,
                t.FlowRun.work_pool_id == pool.id,
                t.FlowRun.state_type == StateType.CANCELLING.value,
            )
        )
    )
    if req.running:
        # Runs the worker still executes but no longer holds (crashed while it was cut off,
        # then retried, perhaps by another worker): it must stop them. Finished runs are left
        # alone: the worker is only reporting their end.
        lost = s.scalars(
            select(t.FlowRun.id).where(
                t.FlowRun.id.in_(req.running),
                t.FlowRun.state_type.not_in([x.value for x in TERMINAL]),
                or_(t.FlowRun.worker_name.is_(None), t.FlowRun.worker_name != req.name),
            )
        )
        cancel |= set(lost)
    return {"cancel": sorted(cancel), "heartbeat_interval": worker.heartbeat_interval}


def list_workers(s: Session, pool_name: str) -> list[dict[str, Any]]:
    pool = get_work_pool(s, pool_name)
    now = t.utcnow()
    out = []
    for w in s.scalars(
        select(t.Worker).where(t.Worker.work_pool_id == pool.id).order_by(t.Worker.name)
    ):
        running = s.scalars(
            select(t.FlowRun.id).where(
                t.FlowRun.worker_name == w.name,
                t.FlowRun.work_pool_id == pool.id,
                t.FlowRun.state_type.in_(ACTIVE_STATES),
            )
        ).all()
        alive = now - w.last_heartbeat <= timedelta(seconds=MISSED_BEATS * w.heartbeat_interval)
        out.append(
            {
                "name": w.name,
                "work_pool_name": pool.name,
                "last_heartbeat": iso(w.last_heartbeat),
                "heartbeat_interval": w.heartbeat_interval,
                "status": "ONLINE" if alive else "OFFLINE",
                "running": len(running),
                "limit": w.limit,
            }
        )
    return out


def crash_runs_of_lost_workers(s: Session) -> list[t.FlowRun]:
    """Runs held by workers silent for MISSED_BEATS intervals become CRASHED (retried if allowed)."""
    now = t.utcnow()
    crashed: list[t.FlowRun] = []
    for w in s.scalars(select(t.Worker)):
        silence = now - w.last_heartbeat
        if silence <= timedelta(seconds=MISSED_BEATS * w.heartbeat_interval):
            continue
        query = select(t.FlowRun).where(
            t.FlowRun.work_pool_id == w.work_pool_id,
            t.FlowRun.worker_name == w.name,
            t.FlowRun.state_type.in_(ACTIVE_STATES),
        )
        if s.get_bind().dialect.name == "postgresql":  # not under a concurrent state change
            query = query.with_for_update(skip_locked=True)
        runs = s.scalars(query).all()
        for run in runs:
            message = (
                f"worker '{w.name}' stopped heartbeating "
                f"(last heartbeat {silence.total_seconds():.0f} s ago)"
            )
            if run.state_type == StateType.CANCELLING.value:
                transition(run, StateType.CANCELLED, message=message)
            else:
                transition(run, StateType.CRASHED, message=message)
            crashed.append(run)
    return crashed
