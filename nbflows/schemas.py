"""Wire models: request bodies (pydantic, validated) and the JSON shapes the API returns."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BadRequest, InvalidInput
from .store import tables as t

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"

#: Integers travel and are stored as signed 64-bit numbers (SQL BIGINT).
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
#: How deep a request body may nest: real bodies nest a few levels (a notebook output, ten);
#: much deeper ones only exhaust the recursion of the code that reads them.
MAX_DEPTH = 100

_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(raw: bytes | bytearray | str) -> Any:
    """Parse a request body, refusing what JSON, the store or a browser cannot hold.

    Raises `BadRequest` for text that is not JSON or nests deeper than `MAX_DEPTH`, and
    `InvalidInput` naming where the body holds NaN or an infinity, an integer outside 64 bits,
    or a lone UTF-16 surrogate. An empty body is `{}`.
    """
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
    except ValueError as err:
        raise BadRequest(f"the request body is not valid JSON: {err}") from None
    check_json(data)
    return data


_TOO_DEEP = f"the request body is nested too deep: at most {MAX_DEPTH} levels of arrays and objects"


def check_json(data: Any) -> None:
    """Raise for the first value of `data` that `load_json` refuses (see there)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not MIN_INT <= value <= MAX_INT:
                raise InvalidInput(
                    f"{where or 'body'}: {value} is out of range; integers must be between "
                    f"{MIN_INT} and {MAX_INT}"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(
                    f"{where or 'body'}: {value} is not a finite number (NaN and infinities "
                    "are not JSON); give a finite number"
                )
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise BadRequest(_TOO_DEEP)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, f"a key in {where or 'the body'}")
                inner = f"{where}.{key}" if where else str(key)
                stack.append((item, inner, depth + 1))


def _check_text(text: str, where: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        raise InvalidInput(
            f"{where or 'the body'}: a lone UTF-16 surrogate (\\u{ord(found.group()):04x}) is not "
            "Unicode text; send UTF-8 text (surrogates only in valid pairs)"
        )


def _refuse_nul(value: Any) -> Any:
    """Text that names things is stored in text columns, where a NUL character cannot go."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    if isinstance(value, list):
        for item in value:
            _refuse_nul(item)
    return value


#: A count, limit or priority: 0 or more, within 64 bits.
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
#: Seconds: finite and not negative.
Seconds = Annotated[float, Field(ge=0)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _no_nul = field_validator("*")(_refuse_nul)


class WorkPoolCreate(Body):
    name: str = Field(pattern=NAME_PATTERN)
    type: str
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: Count | None = None
    paused: bool = False


class WorkPoolUpdate(Body):
    description: str | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: Count | None = None
    paused: bool | None = None


class WorkQueueCreate(Body):
    name: str = Field(pattern=NAME_PATTERN)
    priority: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    concurrency_limit: Count | None = None
    paused: bool = False
    description: str | None = None


class WorkQueueUpdate(Body):
    priority: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    concurrency_limit: Count | None = None
    paused: bool | None = None
    description: str | None = None


class DeployRequest(Body):
    path: str = Field(min_length=1)
    flow_name: str | None = Field(default=None, min_length=1)
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
    retries: Count = 0
    retry_delay: Seconds = 0.0
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
    flow_name: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_run_id: str | None = None
    state: Literal["RUNNING", "PENDING", "SCHEDULED"] = "RUNNING"
    notebook_path: str | None = None
    max_retries: Count = 0
    retry_delay: Seconds = 0.0
    description: str | None = None


class SetState(Body):
    type: str
    name: str | None = None
    message: str | None = None
    retry: bool = False
    #: The reporting worker: refused (409) unless it still holds the run.
    worker: str | None = None


class LogIn(Body):
    timestamp: datetime | None = None
    level: int = 20
    message: str
    cell_index: Count | None = None
    source: str = Field(default="stdout", max_length=200)

    @field_validator("message", mode="before")
    @classmethod
    def _keep_nul_readable(cls, value: Any) -> Any:
        # Output is relayed as printed; a NUL cannot be stored as text, so it is shown as U+FFFD.
        return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class ClaimRequest(Body):
    worker: str = Field(min_length=1, max_length=200)
    queues: list[str] | None = None
    limit: int = Field(default=1, ge=1, le=1000)
    wait: float = Field(default=0.0, ge=0, le=30)


class HeartbeatRequest(Body):
    name: str = Field(min_length=1, max_length=200)
    running: list[str] = Field(default_factory=list)
    limit: Count | None = None
    heartbeat_interval: float | None = Field(default=None, gt=0, le=3600)
    wait: float = Field(default=0.0, ge=0, le=30)


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
