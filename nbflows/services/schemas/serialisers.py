"""Store rows as the API's JSON: work queues, flow runs and log lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nbflows.store import tables as t


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def work_queue_json(q: t.WorkQueue, pool_name: str) -> dict[str, Any]:
    return {
        "id": q.id,
        "name": q.name,
        "work_pool_name": pool_name,
        "priority": q.priority,
        "concurrency_limit": q.concurrency_limit,
        "paused": q.paused,
        "description": q.description,
        "created": iso(q.created),
    }


def flow_run_json(
    r: t.FlowRun,
    *,
    deployment_name: str | None = None,
    pool_name: str | None = None,
    queue_name: str | None = None,
) -> dict[str, Any]:
    duration = None
    if r.start_time is not None:
        end = r.end_time or t.utcnow()
        duration = round((end - r.start_time).total_seconds(), 3)
    return {
        "id": r.id,
        "name": r.name,
        "flow_name": r.flow_name,
        "kind": r.kind,
        "deployment_id": r.deployment_id,
        "deployment_name": deployment_name,
        "deployment_version": r.deployment_version,
        "work_pool_name": pool_name,
        "work_queue_name": queue_name,
        "state": {
            "type": r.state_type,
            "name": r.state_name,
            "message": r.state_message,
            "timestamp": iso(r.state_timestamp),
        },
        "parameters": r.parameters,
        "job_variables": r.job_variables,
        "attempt": r.attempt,
        "max_retries": r.max_retries,
        "retry_delay": r.retry_delay,
        "expected_start_time": iso(r.expected_start_time),
        "start_time": iso(r.start_time),
        "end_time": iso(r.end_time),
        "duration": duration,
        "created": iso(r.created),
        "updated": iso(r.updated),
        "worker_name": r.worker_name,
        "parent_run_id": r.parent_run_id,
        "idempotency_key": r.idempotency_key,
        "tags": r.tags,
        "notebook_path": r.notebook_path,
        "log_count": r.log_count,
        "logs_truncated": r.logs_truncated,
        "has_notebook": r.has_notebook,
        "outputs": r.outputs or {},
    }


def log_json(line: t.LogLine) -> dict[str, Any]:
    return {
        "id": line.id,
        "flow_run_id": line.flow_run_id,
        "timestamp": iso(line.timestamp),
        "level": line.level,
        "message": line.message,
        "cell_index": line.cell_index,
        "source": line.source,
    }
