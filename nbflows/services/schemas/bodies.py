"""Request bodies (pydantic, validated): what each POST, PATCH and PUT of the API accepts, and
`parse`, which turns pydantic's errors into one readable 422 (or 400).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from nbflows.errors import BadRequest, InvalidInput
from nbflows.services.schemas.values import (
    MAX_FLOW_NAME,
    MAX_INT,
    MIN_INT,
    STATE_NAMES,
    Catchup,
    Count,
    Fence,
    Float,
    Int,
    JSONObject,
    Moment,
    Name,
    Priority,
    Seconds,
    Text,
    _number,
    unchanged,
)
from nbflows.workers.job_templates import pool_types


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WorkPoolCreate(Body):
    name: Name
    type: Text = Field(json_schema_extra={"enum": list(pool_types())})
    description: Text | None = None
    base_job_template: JSONObject | None = None
    concurrency_limit: Count | None = None
    paused: StrictBool = False


class WorkPoolUpdate(Body):
    description: Text | None = None
    # Fields left out stay as they are; those without `| None` cannot be null.
    base_job_template: JSONObject | None = Field(
        default=None, description="null: the pool type's default template"
    )
    concurrency_limit: Count | None = Field(default=None, description="null: no limit")
    paused: StrictBool = unchanged()


class WorkQueueCreate(Body):
    name: Name
    priority: Priority | None = None
    concurrency_limit: Count | None = None
    paused: StrictBool = False
    description: Text | None = None


class WorkQueueUpdate(Body):
    # Fields left out stay as they are; those without `| None` cannot be null.
    priority: Priority = unchanged()
    concurrency_limit: Count | None = Field(default=None, description="null: no limit")
    paused: StrictBool = unchanged()
    description: Text | None = None


#: Days a finished run is kept (retention).
RetentionDays = Annotated[float, Field(gt=0, le=365000), BeforeValidator(_number)]
#: What the executed notebook of a run may be exported to.
ExportFormat = Literal["html", "pdf"]


class DeployRequest(Body):
    path: Text = Field(min_length=1)
    flow_name: Text | None = Field(default=None, min_length=1, max_length=MAX_FLOW_NAME)
    name: Name
    work_pool_name: Text
    work_queue_name: Text | None = None
    parameters: JSONObject = Field(default_factory=dict)
    job_variables: JSONObject = Field(default_factory=dict)
    schedules: list[JSONObject] = Field(default_factory=list)
    paused: StrictBool = False
    tags: list[Text] = Field(default_factory=list)
    description: Text | None = None
    version: Text | None = Field(default=None, max_length=200)
    retries: Count = 0
    retry_delay: Seconds = 0.0
    catchup: Catchup = "latest"
    image: JSONObject | None = None
    notebook: JSONObject | None = None
    #: Deploying an existing deployment to another work pool moves it only when this is true.
    move_pool: StrictBool = False
    #: The kernel to run the notebook in (papermill's `-k`), e.g. for a notebook without one.
    kernel_name: Text | None = Field(default=None, min_length=1, max_length=200)
    retention_days: RetentionDays | None = None
    retention_keep_last: Count | None = None
    exports: list[ExportFormat] | None = None


class DeploymentUpdate(Body):
    paused: StrictBool | None = None
    parameters: JSONObject | None = None
    job_variables: JSONObject | None = None
    schedules: list[JSONObject] | None = None
    tags: list[Text] | None = None
    description: Text | None = None
    work_queue_name: Text | None = None
    catchup: Catchup | None = None
    retention_days: RetentionDays | None = Field(default=None, description="null: unchanged")
    retention_keep_last: Count | None = Field(default=None, description="null: unchanged")
    exports: list[ExportFormat] | None = None


class RunRequest(Body):
    parameters: JSONObject = Field(default_factory=dict)
    job_variables: JSONObject = Field(default_factory=dict)
    idempotency_key: Text | None = Field(default=None, max_length=400)
    tags: list[Text] = Field(default_factory=list)
    scheduled_time: Moment | None = None


class InteractiveRunCreate(Body):
    flow_name: Text = Field(min_length=1, max_length=MAX_FLOW_NAME)
    parameters: JSONObject = Field(default_factory=dict)
    tags: list[Text] = Field(default_factory=list)
    parent_run_id: Text | None = Field(default=None, max_length=32)
    state: Literal["RUNNING", "PENDING", "SCHEDULED"] = "RUNNING"
    notebook_path: Text | None = None
    max_retries: Count = 0
    retry_delay: Seconds = 0.0
    description: Text | None = None
    #: The creator beats every this many seconds (`POST flow_runs/{id}/heartbeat`); the run
    #: CRASHES after 3 missed beats. None: the run is not watched.
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600), BeforeValidator(_number)] | None = (
        None
    )


class FlowRunHeartbeatRequest(Body):
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600), BeforeValidator(_number)] = 5.0


class SetState(Body):
    type: Text = Field(json_schema_extra={"enum": list(STATE_NAMES)})
    name: Text | None = Field(default=None, max_length=30)
    message: Text | None = None
    retry: StrictBool = False
    #: The reporting worker: refused (409) unless it still holds the run.
    worker: Text | None = Field(default=None, max_length=200)
    #: The fencing token its claim returned (required with `worker`): refused (409) unless it
    #: is the run's current one.
    fence: Fence | None = None


class LogIn(Body):
    timestamp: Moment | None = None
    level: Int = Field(default=20, ge=MIN_INT, le=MAX_INT)
    message: str
    cell_index: Count | None = None
    source: Text = Field(default="stdout", max_length=20)
    #: The claim's fencing token and the line's number in it: a line sent twice is stored once.
    fence: Fence | None = None
    seq: Count | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _keep_nul_readable(cls, value: Any) -> Any:
        # Output is relayed as printed; a NUL cannot be stored as text, so it is shown as U+FFFD.
        return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class OutputIn(Body):
    """One output of a run: `nbflows.output(name, value)`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
    value: Any = None


class PipelineDeployRequest(Body):
    """Deploy a pipeline (see `nbflows.pipelines.spec.PipelineSpec` for `pipeline`)."""

    name: Name
    pipeline: JSONObject
    parameters: JSONObject = Field(default_factory=dict)
    schedules: list[JSONObject] = Field(default_factory=list)
    paused: StrictBool = False
    tags: list[Text] = Field(default_factory=list)
    description: Text | None = None
    catchup: Catchup = "latest"
    #: Where relative notebook paths of the steps are found (a YAML file's folder, say).
    base_dir: Text | None = None


class ClaimRequest(Body):
    worker: Text = Field(min_length=1, max_length=200)
    queues: list[Text] | None = None
    limit: Int = Field(default=1, ge=1, le=1000)
    wait: Float = Field(default=0.0, ge=0, le=30)


class HeartbeatRequest(Body):
    name: Text = Field(min_length=1, max_length=200)
    running: list[Text] = Field(default_factory=list)
    limit: Count | None = None
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600), BeforeValidator(_number)] | None = (
        None
    )
    wait: Float = Field(default=0.0, ge=0, le=30)
    #: run id -> the fencing token the worker holds it with.
    fences: dict[Text, Fence] = Field(default_factory=dict)
    #: Why the worker cannot execute this pool's runs now (shown on the pool); None if it can.
    problem: Text | None = Field(default=None, max_length=2000)


class SchedulePreviewRequest(Body):
    schedules: list[JSONObject] = Field(min_length=1, max_length=5)
    count: Int = Field(default=5, ge=1, le=20)
    #: When the times start (exclusive); now by default.
    after: Moment | None = None


class ImageBuildRequest(Body):
    """An image build for a deployment to a docker work pool (the deploy dialog's "Build")."""

    path: Text = Field(min_length=1, description="The notebook, relative to the server's root.")
    flow_name: Text | None = Field(default=None, min_length=1, max_length=MAX_FLOW_NAME)
    work_pool_name: Text
    job_variables: JSONObject = Field(default_factory=dict)
    image: Text = Field(
        min_length=1, max_length=500, description="The image name, optionally `name:tag`."
    )
    base_image: Text | None = Field(
        default=None, min_length=1, max_length=500, description="Base of the generated Dockerfile."
    )
    build: StrictBool = Field(default=True, description="false: only compute the reference.")
    push: StrictBool = False


class DeployPreviewRequest(Body):
    path: Text = Field(min_length=1)
    #: A `%%flow` cell's flow; none: the whole notebook.
    flow_name: Text | None = Field(default=None, min_length=1, max_length=MAX_FLOW_NAME)
    #: Checked against the notebook's parameters (422 naming the valid ones).
    parameters: JSONObject = Field(default_factory=dict)


class Notebook(BaseModel):
    """A notebook as nbformat JSON (an `.ipynb` file's content)."""

    model_config = ConfigDict(extra="allow")

    cells: list[JSONObject]
    metadata: JSONObject = Field(default_factory=dict)
    nbformat: int = 4
    nbformat_minor: int = 5


class EndState(Body):
    """The state a worker's attempt ended in, reported by that worker under its claim's fence."""

    type: Text = Field(json_schema_extra={"enum": list(STATE_NAMES)})
    message: Text | None = None
    #: The reporting worker: refused (409) unless it still holds the run under `fence`.
    worker: Text = Field(max_length=200)
    fence: Fence

    def as_report(self) -> SetState:
        return SetState(type=self.type, message=self.message, worker=self.worker, fence=self.fence)


class RunEnd(Body):
    """A worker's end of an attempt in one request: the run's last log lines, its executed
    notebook, then its end state."""

    logs: list[LogIn] = Field(default_factory=list)
    notebook: Notebook | None = None
    state: EndState


def parse(model: type[BaseModel], data: Any, what: str = "request") -> Any:
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
                problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        raise InvalidInput(f"invalid {what}: " + "; ".join(problems)) from None
