"""Deployments as the API shows them: the reply model is the routes' response schema and the
serialiser (job variables redacted: secrets are never shown)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nbflows.services.schemas.bodies import ExportFormat
from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import JSONObject, iso
from nbflows.store import tables as t
from nbflows.workers import redaction


class ScheduleReply(Reply):
    """One schedule of a deployment; the fields of its kind (`cron`, `interval`, `rrule`,
    `timezone`, ...) follow the declared ones."""

    id: str
    kind: Literal["cron", "interval", "rrule"]
    active: bool

    @classmethod
    def serialise(cls, schedule_id: str, schedule: dict[str, Any], active: bool) -> dict[str, Any]:
        """The declared fields first, then the kind's own, as the response model orders them."""
        fields = {"id": schedule_id, **schedule, "active": active}
        return {**{name: fields[name] for name in cls.model_fields}, **fields}


class DeploymentReply(Reply):
    id: str
    flow_name: str
    name: str
    full_name: str
    kind: Literal["cell", "notebook", "pipeline"]
    entrypoint: str
    path: str
    working_dir: str
    work_pool_id: str
    work_pool_name: str
    work_queue_name: str
    parameters: JSONObject
    parameter_schema: JSONObject
    job_variables: JSONObject
    schedules: list[ScheduleReply]
    paused: bool
    version: int
    version_label: str | None
    tags: list[str]
    description: str | None
    retries: int
    retry_delay: float
    catchup: Literal["all", "latest", "skip"]
    image: JSONObject | None
    retention_days: float | None = None
    retention_keep_last: int | None = None
    exports: list[ExportFormat] = Field(default_factory=list)
    created: Timestamp | None
    updated: Timestamp | None

    @classmethod
    def serialise(cls, d: t.Deployment) -> dict[str, Any]:
        return cls.build(
            id=d.id,
            flow_name=d.flow_name,
            name=d.name,
            full_name=f"{d.flow_name}/{d.name}",
            kind=d.kind,
            entrypoint=d.entrypoint,
            path=d.path,
            working_dir=d.working_dir,
            work_pool_id=d.work_pool_id,
            work_pool_name=d.pool.name,
            work_queue_name=d.queue.name,
            parameters=d.parameters,
            parameter_schema=d.parameter_schema,
            job_variables=redaction.redact(d.job_variables, d.pool.base_job_template),
            schedules=[ScheduleReply.serialise(x.id, x.schedule, x.active) for x in d.schedules],
            paused=d.paused,
            version=d.version,
            version_label=d.version_label,
            tags=d.tags,
            description=d.description,
            retries=d.retries,
            retry_delay=d.retry_delay,
            catchup=d.catchup,
            image=d.image,
            retention_days=d.retention_days,
            retention_keep_last=d.retention_keep_last,
            exports=d.exports or [],
            created=iso(d.created),
            updated=iso(d.updated),
        )
