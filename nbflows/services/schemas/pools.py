"""Work pools, their queues and their workers as the API shows them: each reply model is the
route's response schema and its resource's serialiser."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import JSONObject, iso
from nbflows.store import tables as t


class WorkQueueReply(Reply):
    id: str
    name: str
    work_pool_name: str
    priority: int
    concurrency_limit: int | None
    paused: bool
    description: str | None
    created: Timestamp | None

    @classmethod
    def serialise(cls, q: t.WorkQueue, pool_name: str) -> dict[str, Any]:
        return cls.build(
            id=q.id,
            name=q.name,
            work_pool_name=pool_name,
            priority=q.priority,
            concurrency_limit=q.concurrency_limit,
            paused=q.paused,
            description=q.description,
            created=iso(q.created),
        )


class WorkPoolReply(Reply):
    id: str
    name: str
    type: str
    description: str | None
    base_job_template: JSONObject
    concurrency_limit: int | None
    paused: bool
    status: Literal["READY", "NOT_READY", "PAUSED"]
    queues: list[WorkQueueReply]
    workers_online: int
    running_runs: int
    status_reason: str | None = Field(
        default=None, description="Why the pool's runs cannot be executed now, if they cannot."
    )
    created: Timestamp | None
    updated: Timestamp | None

    @classmethod
    def serialise(
        cls,
        pool: t.WorkPool,
        *,
        status: str,
        status_reason: str | None,
        workers_online: int,
        running_runs: int,
    ) -> dict[str, Any]:
        return cls.build(
            id=pool.id,
            name=pool.name,
            type=pool.type,
            description=pool.description,
            base_job_template=pool.base_job_template,
            concurrency_limit=pool.concurrency_limit,
            paused=pool.paused,
            status=status,
            queues=[WorkQueueReply.serialise(q, pool.name) for q in pool.queues],
            workers_online=workers_online,
            running_runs=running_runs,
            status_reason=status_reason,
            created=iso(pool.created),
            updated=iso(pool.updated),
        )


class WorkerReply(Reply):
    name: str
    work_pool_name: str
    last_heartbeat: Timestamp | None
    heartbeat_interval: float
    status: Literal["ONLINE", "OFFLINE"]
    running: int
    limit: int | None
    problem: str | None = Field(
        default=None,
        description="Why an online worker cannot execute runs now (e.g. no Docker engine), if it "
        "cannot.",
    )

    @classmethod
    def serialise(
        cls, w: t.Worker, pool_name: str, *, online: bool, running: int
    ) -> dict[str, Any]:
        return cls.build(
            name=w.name,
            work_pool_name=pool_name,
            last_heartbeat=iso(w.last_heartbeat),
            heartbeat_interval=w.heartbeat_interval,
            status="ONLINE" if online else "OFFLINE",
            running=running,
            limit=w.limit,
            problem=w.problem if online else None,
        )
