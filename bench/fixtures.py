"""Stores filled with many rows quickly (bulk inserts), for the scale benchmarks."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from nbflows.store import tables as t
from nbflows.store.db import Database
from nbflows.workers import job_templates

TRIVIAL = Path(__file__).parents[1] / "notebooks" / "trivial.ipynb"


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def add_pool(s: Session) -> t.WorkPool:
    """A process pool named "bench" with its default queue, flushed (its ids are set)."""
    pool = t.WorkPool(
        name="bench",
        type="process",
        base_job_template=job_templates.default_base_job_template("process"),
    )
    pool.queues.append(t.WorkQueue(name="default", priority=1))
    s.add(pool)
    s.flush()
    return pool


def pool_with_deployments(db: Database, count: int, crons: list[str]) -> None:
    """`count` deployments of one pool, each with one cron schedule taken in turn from `crons`."""
    notebook = TRIVIAL.read_text()
    now = t.utcnow()
    with db.session() as s:
        pool = add_pool(s)
        queue_id = pool.queues[0].id
        deployments, versions, schedules = [], [], []
        for i in range(count):
            dep_id = t.new_id()
            deployments.append(
                {
                    "id": dep_id,
                    "flow_name": "trivial",
                    "name": f"d{i}",
                    "kind": "notebook",
                    "entrypoint": "trivial.ipynb",
                    "path": str(TRIVIAL),
                    "working_dir": str(TRIVIAL.parent),
                    "work_pool_id": pool.id,
                    "work_queue_id": queue_id,
                    "parameters": {},
                    "parameter_schema": {
                        "type": "object",
                        "properties": {"x": {"type": "integer", "default": 1}},
                    },
                    "job_variables": {},
                    "paused": False,
                    "version": 1,
                    "tags": [],
                    "retries": 0,
                    "retry_delay": 0.0,
                    "catchup": "latest",
                    "created": now,
                    "updated": now,
                }
            )
            versions.append(
                {"deployment_id": dep_id, "version": 1, "notebook": notebook, "created": now}
            )
            schedules.append(
                {
                    "id": t.new_id(),
                    "deployment_id": dep_id,
                    "active": True,
                    "created": now,
                    "schedule": {
                        "kind": "cron",
                        "cron": crons[i % len(crons)],
                        "timezone": "UTC",
                        "day_or": True,
                        "active": True,
                    },
                }
            )
        _bulk(s, t.Deployment, deployments)
        _bulk(s, t.DeploymentVersion, versions)
        _bulk(s, t.DeploymentSchedule, schedules)


def many_runs(db: Database, count: int, deployments: int = 100) -> list[str]:
    """`count` finished runs spread over `deployments` deployments and a few states."""
    pool_with_deployments(db, deployments, ["0 6 * * *"])
    with db.session() as s:
        dep_rows = s.query(
            t.Deployment.id, t.Deployment.work_pool_id, t.Deployment.work_queue_id
        ).all()
    states = ["COMPLETED"] * 8 + ["FAILED", "CRASHED"]
    rng = random.Random(7)
    start = t.utcnow() - timedelta(days=365)
    batch: list[dict[str, object]] = []
    with db.session() as s:
        for i in range(count):
            dep_id, pool_id, queue_id = dep_rows[i % len(dep_rows)]
            state = rng.choice(states)
            created = start + timedelta(seconds=i * 30)
            batch.append(
                {
                    "id": t.new_id(),
                    "name": f"trivial-{i:07d}",
                    "flow_name": "trivial",
                    "kind": "deployment",
                    "deployment_id": dep_id,
                    "deployment_version": 1,
                    "work_pool_id": pool_id,
                    "work_queue_id": queue_id,
                    "state_type": state,
                    "state_name": state.capitalize(),
                    "state_timestamp": created,
                    "parameters": {"x": i},
                    "job_variables": {},
                    "attempt": 1,
                    "max_retries": 0,
                    "retry_delay": 0.0,
                    "expected_start_time": created,
                    "start_time": created,
                    "end_time": created + timedelta(seconds=1),
                    "worker_name": "w",
                    "tags": [],
                    "log_count": 0,
                    "logs_truncated": False,
                    "has_notebook": False,
                    "created": created,
                    "updated": created,
                }
            )
            if len(batch) == 20_000:
                _bulk(s, t.FlowRun, batch)
                batch = []
        if batch:
            _bulk(s, t.FlowRun, batch)
    return [row[0] for row in dep_rows]


def _bulk(s: Session, model: type, rows: list[dict[str, object]]) -> None:
    if rows:
        s.execute(insert(_table(model)), rows)
