"""Response bodies: the JSON shapes the API returns, declared as each route's response model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
)

from nbflows.protocol import StateType
from nbflows.services.schemas.bodies import Body, ExportFormat, RetentionDays
from nbflows.services.schemas.values import Count, JSONObject, Name, Text

# ---- responses ----------------------------------------------------------------------------------


class Reply(BaseModel):
    """A response body. Fields beyond the declared ones may be added in later versions."""

    model_config = ConfigDict(extra="allow")


#: An ISO 8601 timestamp with its UTC offset.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class ErrorReply(Reply):
    message: str
    reason: str = Field(
        description="The error's name: BadRequest, NotFound, Conflict, InvalidInput, TooLarge, "
        "ServiceUnavailable, or the HTTP status in words (Forbidden, MethodNotAllowed)."
    )
    details: JSONObject | None = None


class LimitsReply(Reply):
    max_body_size: int
    max_parameters_size: int
    max_notebook_size: int
    max_log_line: int
    max_run_output: int
    max_artifact_size: int
    max_run_artifacts: int
    max_project_size: int


class HealthReply(Reply):
    status: Literal["ok"]
    version: str
    database: str
    root_dir: str | None
    limits: LimitsReply


class PoolTypeReply(Reply):
    type: str
    description: str
    base_job_template: JSONObject


class WorkQueueReply(Reply):
    id: str
    name: str
    work_pool_name: str
    priority: int
    concurrency_limit: int | None
    paused: bool
    description: str | None
    created: Timestamp | None


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


class WorkerReply(Reply):
    name: str
    work_pool_name: str
    last_heartbeat: Timestamp | None
    heartbeat_interval: float
    status: Literal["ONLINE", "OFFLINE"]
    running: int
    limit: int | None


class HeartbeatReply(Reply):
    cancel: list[str] = Field(description="Ids of the worker's runs it must cancel.")
    heartbeat_interval: float


class FlowRunBeatReply(Reply):
    id: str
    state: JSONObject


class ScheduleReply(Reply):
    id: str
    kind: Literal["cron", "interval", "rrule"]
    active: bool


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


class OutputRecordedReply(Reply):
    flow_run_id: str
    name: str


class PipelineStepReply(Reply):
    step: str
    item: int
    label: str
    status: Literal["waiting", "run", "skipped", "failed"]
    state: str = Field(description="WAITING, SKIPPED, or the state type of the step's run.")
    message: str | None
    flow_run_id: str | None
    outputs: JSONObject
    repair: int


class PipelineGraphReply(Reply):
    flow_run: FlowRunReply
    steps: list[JSONObject] = Field(description="The pipeline's steps as deployed.")
    edges: list[list[str]] = Field(description="[upstream, downstream] step names.")
    step_runs: list[PipelineStepReply]


class ClaimedRunReply(Reply):
    flow_run: FlowRunReply
    deployment: DeploymentReply | None
    job_variables: JSONObject
    job_configuration: JSONObject
    run_token: str | None = Field(
        default=None, description="The run's own credential, given to its kernel (this attempt)."
    )


class WorkerTokenCreate(Body):
    name: Name
    pools: Annotated[list[Name], Field(min_length=1, max_length=1000)]


class WorkerTokenReply(Reply):
    id: str
    name: str
    pools: list[str]
    pool_types: list[str]
    created: Timestamp


class WorkerTokenCreated(WorkerTokenReply):
    token: str = Field(description="Shown once: the server keeps only its hash.")


#: A secret's name: it is written `{{ secret.NAME }}` in job variables and parameters.
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")]


class SecretSet(Body):
    value: Annotated[Text, Field(min_length=1, max_length=65536)]


class SecretReply(Reply):
    name: str
    created: Timestamp
    updated: Timestamp


class RunSecretsReply(Reply):
    values: dict[str, str] = Field(description="The values of the secrets the run refers to.")


class LogLineReply(Reply):
    id: int
    flow_run_id: str
    timestamp: Timestamp | None
    level: int
    message: str
    cell_index: int | None
    source: str


class LogsPageReply(Reply):
    items: list[LogLineReply]
    next_after: int
    flow_run: FlowRunReply


class LogsWrittenReply(Reply):
    accepted: int
    truncated: bool = Field(description="The run's log is full: later lines are not kept.")


class ScheduleTimesReply(Reply):
    description: str
    next_times: list[Timestamp]


class SchedulePreviewReply(Reply):
    schedules: list[ScheduleTimesReply]


class FlowCellReply(Reply):
    name: str
    cell_index: int


class DeployCellReply(Reply):
    index: int = Field(description="The cell's index in the notebook on disk.")
    cell_type: str
    source: str
    tags: list[str]


class DeployPreviewReply(Reply):
    path: str
    kind: Literal["cell", "notebook"]
    flow_name: str
    kernel_name: str | None
    flows: list[FlowCellReply]
    parameter_schema: JSONObject
    cells: list[DeployCellReply] = Field(description="The cells the deployment will hold.")


class RunFileReply(Reply):
    """A file of a run in the result store (an artifact, an export)."""

    name: str
    size: int
    sha256: str
    created: Timestamp | None


class ProjectFileReply(Reply):
    path: str
    sha256: str
    size: int


class ProjectFilesReply(Reply):
    """The project files a deployment version carries (for workers without its folder)."""

    notebook_dir: str = Field(description="The notebook's folder inside the project.")
    files: list[ProjectFileReply]


class PruneRequest(Body):
    older_than_days: RetentionDays | None = Field(
        default=None, description="Remove finished runs created more than this many days ago."
    )
    keep_last: Count | None = Field(
        default=None,
        description="Keep this many newest runs per deployment (per flow for interactive runs).",
    )
    deployment: Text | None = Field(
        default=None, description="Only runs of this deployment (id or flow/name)."
    )
    dry_run: StrictBool = Field(default=False, description="Say what would go; remove nothing.")


class PrunedRunReply(Reply):
    id: str
    name: str
    flow_name: str
    state: str
    created: Timestamp | None
    bytes: int


class StorageReply(Reply):
    runs: int
    bytes: int = Field(description="Bytes of notebooks, exports, artifacts and log text kept.")


class PruneReply(Reply):
    dry_run: bool
    removed: int
    removed_bytes: int
    runs: list[PrunedRunReply] = Field(description="The runs removed (the first 1000).")
    before: StorageReply
    after: StorageReply
