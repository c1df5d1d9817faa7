"""Wire models: request bodies (pydantic, validated) and the JSON shapes the API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest, InvalidInput
from .store import tables as t

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkPoolCreate(Body):
    name: str = Field(pattern=NAME_PATTERN)
    type: str
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool = False


class WorkPoolUpdate(Body):
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool | None = None


class WorkQueueCreate(Body):
    name: str = Field(pattern=NAME_PATTERN)
    priority: int | None = Field(default=None, ge=1)
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool = False
    description: str | None = None


class WorkQueueUpdate(Body):
    priority: int | None = Field(default=None, ge=1)
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool | None = None
    description: str | None = None


class DeployRequest(Body):
    path: str
    flow_name: str | None = None
    name: str = Field(pattern=NAME_PATTERN)
    work_pool_name: str
    work_queue_name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    paused: bool = False
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    version: str | None = None
    retries: int = Field(default=0, ge=0)
    retry_delay: float = Field(default=0.0, ge=0)
    catchup: Literal["all", "latest", "skip"] = "latest"
    image: dict[str, Any] | None = None
    notebook: dict[str, Any] | None = None


class DeploymentUpdate(Body):
    paused: bool | None = None
    parameters: dict[str, Any] | None = None
    job_variables: dict[str, Any] | None = None
    schedules: list[dict[str, Any]] | None = None
    tags: list[str] | None = None
    description: str | None = None
    work_queue_name: str | None = None
    catchup: Literal["all", "latest", "skip"] | None = None


class RunRequest(Body):
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    tags: list[str] = Field(default_factory=list)
    scheduled_time: datetime | None = None


class InteractiveRunCreate(Body):
    flow_name: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_run_id: str | None = None
    state: Literal["RUNNING", "PENDING", "SCHEDULED"] = "RUNNING"
    notebook_path: str | None = None
    max_retries: int = Field(default=0, ge=0)
    retry_delay: float = Field(default=0.0, ge=0)
    description: str | None = None
    #: The creator beats every this many seconds (`POST flow_runs/{id}/heartbeat`); the run
    #: CRASHES after 3 missed beats. None: the run is not watched.
    heartbeat_interval: float | None = Field(default=None, gt=0, le=3600)


class FlowRunHeartbeatRequest(Body):
    heartbeat_interval: float = Field(default=5.0, gt=0, le=3600)


class SetState(Body):
    type: str
    name: str | None = None
    message: str | None = None
    retry: bool = False
    #: The reporting worker: refused (409) unless it still holds the run.
    worker: str | None = None
    #: The fencing token its claim returned (required with `worker`): refused (409) unless it
    #: is the run's current one.
    fence: int | None = None


class LogIn(BaseModel):
    timestamp: datetime | None = None
    level: int = 20
    message: str
    cell_index: int | None = None
    source: str = "stdout"
    #: The claim's fencing token and the line's number in it: a line sent twice is stored once.
    fence: int | None = None
    seq: int | None = Field(default=None, ge=0)


class ClaimRequest(Body):
    worker: str = Field(min_length=1, max_length=200)
    queues: list[str] | None = None
    limit: int = Field(default=1, ge=1, le=1000)
    wait: float = Field(default=0.0, ge=0, le=30)


class HeartbeatRequest(Body):
    name: str = Field(min_length=1, max_length=200)
    running: list[str] = Field(default_factory=list)
    limit: int | None = None
    heartbeat_interval: float | None = Field(default=None, gt=0, le=3600)
    wait: float = Field(default=0.0, ge=0, le=30)
    #: run id -> the fencing token the worker holds it with.
    fences: dict[str, int] = Field(default_factory=dict)
    #: Why the worker cannot execute this pool's runs now (shown on the pool); None if it can.
    problem: str | None = Field(default=None, max_length=2000)


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate a request body; pydantic's errors become one readable 422 (or 400)."""
    if not isinstance(data, dict) and not (model is LogIn and isinstance(data, list)):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "body"
            if e["type"] == "extra_forbidden":
                allowed = ", ".join(model.model_fields)
                problems.append(f"{where}: unknown field (allowed: {allowed})")
            else:
                problems.append(f"{where}: {e['msg']}")
        raise InvalidInput("invalid request: " + "; ".join(problems)) from None


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
