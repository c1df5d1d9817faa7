"""Flow runs as the API shows them: the reply model is the routes' response schema and the
serialiser."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nbflows.protocol import StateType
from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import JSONObject, iso
from nbflows.store import tables as t


class StateReply(Reply):
    type: StateType
    name: str
    message: str | None
    timestamp: Timestamp | None


class FlowRunReply(Reply):
    id: str
    name: str
    flow_name: str
    kind: Literal["deployment", "interactive", "pipeline"]
    deployment_id: str | None
    deployment_name: str | None
    deployment_version: int | None
    work_pool_name: str | None
    work_queue_name: str | None
    state: StateReply
    parameters: JSONObject
    job_variables: JSONObject
    attempt: int
    max_retries: int
    retry_delay: float
    expected_start_time: Timestamp | None
    start_time: Timestamp | None
    end_time: Timestamp | None
    duration: float | None
    created: Timestamp | None
    updated: Timestamp | None
    worker_name: str | None
    parent_run_id: str | None
    idempotency_key: str | None
    tags: list[str]
    notebook_path: str | None
    log_count: int
    logs_truncated: bool
    has_notebook: bool
    outputs: JSONObject = Field(
        default_factory=dict, description="What the run recorded with nbflows.output(name, value)."
    )

    @classmethod
    def serialise(
        cls,
        r: t.FlowRun,
        *,
        deployment_name: str | None = None,
        pool_name: str | None = None,
        queue_name: str | None = None,
        job_variables: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`job_variables`: the run's, as shown (redacted); by default as stored."""
        duration = None
        if r.start_time is not None:
            end = r.end_time or t.utcnow()
            duration = round((end - r.start_time).total_seconds(), 3)
        return cls.build(
            id=r.id,
            name=r.name,
            flow_name=r.flow_name,
            kind=r.kind,
            deployment_id=r.deployment_id,
            deployment_name=deployment_name,
            deployment_version=r.deployment_version,
            work_pool_name=pool_name,
            work_queue_name=queue_name,
            state=StateReply.build(
                type=r.state_type,
                name=r.state_name,
                message=r.state_message,
                timestamp=iso(r.state_timestamp),
            ),
            parameters=r.parameters,
            job_variables=r.job_variables if job_variables is None else job_variables,
            attempt=r.attempt,
            max_retries=r.max_retries,
            retry_delay=r.retry_delay,
            expected_start_time=iso(r.expected_start_time),
            start_time=iso(r.start_time),
            end_time=iso(r.end_time),
            duration=duration,
            created=iso(r.created),
            updated=iso(r.updated),
            worker_name=r.worker_name,
            parent_run_id=r.parent_run_id,
            idempotency_key=r.idempotency_key,
            tags=r.tags,
            notebook_path=r.notebook_path,
            log_count=r.log_count,
            logs_truncated=r.logs_truncated,
            has_notebook=r.has_notebook,
            outputs=r.outputs or {},
        )
