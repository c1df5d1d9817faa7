"""Response bodies: the JSON shapes the API returns, declared as each route's response model.

The replies of the main resources, which are also their serialisers, have modules of their own:
`pools`, `deployments`, `flow_runs`, `logs`, `run_files`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    StrictBool,
)

from nbflows.services.schemas.bodies import Body, RetentionDays
from nbflows.services.schemas.deployments import DeploymentReply
from nbflows.services.schemas.flow_runs import FlowRunReply
from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import Count, JSONObject, Name, Text

# ---- responses ----------------------------------------------------------------------------------


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


class HeartbeatReply(Reply):
    cancel: list[str] = Field(description="Ids of the worker's runs it must cancel.")
    heartbeat_interval: float


class FlowRunBeatReply(Reply):
    id: str
    state: JSONObject


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
