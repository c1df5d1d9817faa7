"""ORM tables. Wire shapes live in `nbflows.services.schemas`; these are storage only."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """128 random bits as 32 hex digits (the shape of uuid4().hex, a few times cheaper)."""
    return os.urandom(16).hex()


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class WorkPool(Base):
    __tablename__ = "work_pools"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    base_job_template: Mapped[dict[str, Any]] = mapped_column(JSON)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    queues: Mapped[list[WorkQueue]] = relationship(
        back_populates="pool", cascade="all, delete-orphan", order_by="WorkQueue.priority"
    )


class WorkQueue(Base):
    __tablename__ = "work_queues"
    __table_args__ = (UniqueConstraint("work_pool_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    work_pool_id: Mapped[str] = mapped_column(ForeignKey("work_pools.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=1)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    pool: Mapped[WorkPool] = relationship(back_populates="queues")


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("flow_name", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    flow_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # "cell" | "notebook" | "pipeline"
    entrypoint: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    working_dir: Mapped[str] = mapped_column(Text)
    work_pool_id: Mapped[str] = mapped_column(ForeignKey("work_pools.id", ondelete="RESTRICT"))
    work_queue_id: Mapped[str] = mapped_column(ForeignKey("work_queues.id", ondelete="RESTRICT"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parameter_schema: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    version_label: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    retry_delay: Mapped[float] = mapped_column(Float, default=0.0)
    catchup: Mapped[str] = mapped_column(String(10), default="latest")
    image: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Retention of this deployment's runs (None: the server's policy).
    retention_days: Mapped[float | None] = mapped_column(Float)
    retention_keep_last: Mapped[int | None] = mapped_column(Integer)
    #: Formats the executed notebook of every run is also exported to (e.g. ["html"]).
    exports: Mapped[list[Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    pool: Mapped[WorkPool] = relationship()
    queue: Mapped[WorkQueue] = relationship()
    schedules: Mapped[list[DeploymentSchedule]] = relationship(
        back_populates="deployment",
        cascade="all, delete-orphan",
        order_by="DeploymentSchedule.created",
    )


class DeploymentVersion(Base):
    """The frozen package of one deploy: the notebook the runs of that version execute."""

    __tablename__ = "deployment_versions"

    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    notebook: Mapped[str] = mapped_column(Text)
    #: The project files the version carries (`nbflows.results.project_files`), or None.
    files: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentSchedule(Base):
    __tablename__ = "deployment_schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Runs exist up to this time; a scheduler pass skips schedules already filled far enough.
    scheduled_until: Mapped[datetime | None] = mapped_column()
    created: Mapped[datetime] = mapped_column(default=utcnow)

    deployment: Mapped[Deployment] = relationship(back_populates="schedules")

    __table_args__ = (Index("ix_schedules_until", "active", "scheduled_until"),)


def _partial(name: str, columns: list[str], where: str) -> Index:
    """An index of the rows matching `where` only (migration 0008_speed)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


#: A run's idempotency key is unique within its deployment.
RUN_KEY = ["deployment_id", "idempotency_key"]


class FlowRun(Base):
    __tablename__ = "flow_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    flow_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # "deployment" | "interactive" | "pipeline"
    deployment_id: Mapped[str | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL")
    )
    deployment_version: Mapped[int | None] = mapped_column(Integer)
    work_pool_id: Mapped[str | None] = mapped_column(
        ForeignKey("work_pools.id", ondelete="SET NULL")
    )
    work_queue_id: Mapped[str | None] = mapped_column(
        ForeignKey("work_queues.id", ondelete="SET NULL")
    )
    state_type: Mapped[str] = mapped_column(String(20))
    state_name: Mapped[str] = mapped_column(String(30))
    state_message: Mapped[str | None] = mapped_column(Text)
    state_timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    retry_delay: Mapped[float] = mapped_column(Float, default=0.0)
    expected_start_time: Mapped[datetime | None] = mapped_column()
    start_time: Mapped[datetime | None] = mapped_column()
    end_time: Mapped[datetime | None] = mapped_column()
    worker_name: Mapped[str | None] = mapped_column(String(200))
    parent_run_id: Mapped[str | None] = mapped_column(String(32))
    #: Unique per deployment (the same key for another deployment is another request).
    idempotency_key: Mapped[str | None] = mapped_column(String(400))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    notebook_path: Mapped[str | None] = mapped_column(Text)
    log_count: Mapped[int] = mapped_column(Integer, default=0)
    logs_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    has_notebook: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Fencing token: bumped by every claim and hand-back; a worker's reports must carry the
    #: value its claim returned, so an attempt's results come only from the worker holding it.
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Runs whose creator heartbeats (a kernel's `%%flow` runs): CRASHED once this passes.
    heartbeat_deadline: Mapped[datetime | None] = mapped_column()
    #: What the run recorded with `nbflows.output(name, value)`: name -> JSON value.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # the scheduler pass: pipeline runs to advance (queries name the kind literally, or
        # the partial index would not serve them)
        _partial("ix_runs_pipeline_state", ["state_type"], "kind = 'pipeline'"),
        # claim: due runs of a pool in a state
        Index("ix_runs_claim", "work_pool_id", "state_type", "expected_start_time"),
        Index("ix_runs_state_created", "state_type", "created"),
        Index("ix_runs_created", "created"),
        Index("ix_runs_deployment_created", "deployment_id", "created"),
        Index("ix_runs_flow_created", "flow_name", "created"),
        Index("ux_runs_idempotency_key", *RUN_KEY, unique=True),
        # Columns most runs leave NULL: indexed for the runs that set them only (a comparison
        # with the column implies it is not NULL, so every query that uses them still can).
        _partial("ix_runs_parent", ["parent_run_id"], "parent_run_id IS NOT NULL"),
        _partial("ix_runs_worker_state", ["worker_name", "state_type"], "worker_name IS NOT NULL"),
        _partial(
            "ix_runs_heartbeat_deadline", ["heartbeat_deadline"], "heartbeat_deadline IS NOT NULL"
        ),
    )


class PipelineVersion(Base):
    """The frozen definition of one deploy of a pipeline (a deployment of kind "pipeline"):
    its steps, each with the id of the step deployment that freezes its notebook."""

    __tablename__ = "pipeline_versions"

    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineStepRun(Base):
    """One step (one item of a fan-out) of a pipeline run: the child run made for it, or why
    none was made (skipped by its run-if, or failed before it could start)."""

    __tablename__ = "pipeline_step_runs"

    pipeline_run_id: Mapped[str] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[str] = mapped_column(String(200), primary_key=True)
    item: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: "run" (see the child run's state), "skipped", or "failed" (no child run could be made).
    status: Mapped[str] = mapped_column(String(20))
    flow_run_id: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    #: The repair (0: the first run) that made this row; a repair keeps what succeeded.
    repair: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_pipeline_steps_flow_run", "flow_run_id"),)


class FlowRunNotebook(Base):
    """The executed notebook of a run (kept for finished and failed runs alike)."""

    __tablename__ = "flow_run_notebooks"

    flow_run_id: Mapped[str] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    notebook: Mapped[str] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RunFile(Base):
    """A file of a run kept in the result store (`nbflows.results`): its executed notebook, an
    export of it, or an artifact. The bytes live in the store; this row is the reference."""

    __tablename__ = "run_files"

    flow_run_id: Mapped[str] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # notebook|export|artifact
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class LogLine(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[int] = mapped_column(Integer, default=20)
    message: Mapped[str] = mapped_column(Text)
    cell_index: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20), default="stdout")
    #: (fence, seq) of a line a worker sent: a line sent again after an outage is stored once.
    fence: Mapped[int | None] = mapped_column(Integer)
    seq: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_logs_run_id", "flow_run_id", "id"),
        Index("ux_logs_run_fence_seq", "flow_run_id", "fence", "seq", unique=True),
    )


class Worker(Base):
    __tablename__ = "workers"

    work_pool_id: Mapped[str] = mapped_column(
        ForeignKey("work_pools.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_heartbeat: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_interval: Mapped[float] = mapped_column(Float, default=10.0)
    limit: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    #: last_heartbeat + 3 intervals: the worker is online until then (indexed, no arithmetic
    #: in SQL).
    online_until: Mapped[datetime | None] = mapped_column()
    #: Why the worker cannot execute the pool's runs now (e.g. no Docker engine); None if it can.
    problem: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_workers_online_until", "online_until"),)


class WorkerCredential(Base):
    """A worker's token (stored as its SHA-256): it may claim, heartbeat and report for the
    pools it names, or for every pool of the types it names (the embedded worker)."""

    __tablename__ = "worker_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64))
    pools: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pool_types: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ux_worker_credentials_token", "token_hash", unique=True),
        Index("ix_worker_credentials_name", "name"),
    )


class RunCredential(Base):
    """A run's token (stored as its SHA-256), valid while the attempt it was minted for (its
    claim's fence) has not ended."""

    __tablename__ = "run_credentials"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    fence: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_run_credentials_run", "flow_run_id"),)


class Secret(Base):
    """A named value, encrypted (Fernet) with a key kept outside the database."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Automations keep their tables in their own package; imported here so that one metadata (and
# Alembic) holds every table.
from nbflows.automations import tables as _automation_tables  # noqa: E402, F401
