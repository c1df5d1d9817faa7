"""Wire models: request bodies (pydantic, validated) and the JSON shapes the API returns."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from nbflows.errors import BadRequest, InvalidInput
from nbflows.protocol import StateType
from nbflows.store import tables as t
from nbflows.workers.job_templates import pool_types

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
#: A run is named `<flow name>-<6 hex digits>` in a 200-character column.
MAX_FLOW_NAME = 193

#: Integer fields are stored in SQL INTEGER columns: signed 32-bit on PostgreSQL.
MIN_INT, MAX_INT = -(2**31), 2**31 - 1
#: Offsets and log line ids (SQL BIGINT, and OFFSET): signed 64-bit.
MAX_BIGINT = 2**63 - 1
#: How deep a request body may nest: real bodies nest a few levels (a notebook output, ten);
#: much deeper ones only exhaust the recursion of the code that reads them.
MAX_DEPTH = 100

_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(raw: bytes | bytearray | str) -> Any:
    """Parse a request body, refusing what JSON, the store or a browser cannot hold.

    Raises `BadRequest` for text that is not JSON or nests deeper than `MAX_DEPTH`, and
    `InvalidInput` naming where the body holds NaN or an infinity, or a lone UTF-16 surrogate.
    An empty body is `{}`. (Integer fields are bounded by their models to what their columns
    hold; integers inside free JSON values such as parameters are kept as they are.)
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


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


#: Text kept in a text column, where a NUL character cannot go.
Text = Annotated[
    str, AfterValidator(_refuse_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]


def _number(value: Any) -> Any:
    # JSON numbers only: pydantic alone would also take "3" or true for a number.
    if isinstance(value, (str, bool)):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an ISO 8601 timestamp (text)")
    return value


#: Any JSON object.
JSONObject = dict[str, Any]
#: A JSON integer or number (not text, not a boolean).
Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]
#: A point in time, given as ISO 8601 text.
Moment = Annotated[datetime, BeforeValidator(_timestamp)]
#: A name of a pool, queue or deployment.
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
#: A count, limit or priority: 0 or more, within 32 bits.
# (Constraints before the validator, so that the JSON schema shows them as minimum/maximum.)
Count = Annotated[int, Field(ge=0, le=MAX_INT), BeforeValidator(_number)]
#: A claim's fencing token.
Fence = Annotated[int, Field(ge=MIN_INT, le=MAX_INT), BeforeValidator(_number)]
Priority = Annotated[int, Field(ge=1, le=MAX_INT), BeforeValidator(_number)]
#: Seconds: finite and not negative.
Seconds = Annotated[float, Field(ge=0), BeforeValidator(_number)]
Catchup = Literal["all", "latest", "skip"]


#: State types as the API spells them.
STATE_NAMES = [state.value for state in StateType]
_STATE_NAMES = "|".join(STATE_NAMES)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged() -> Any:
    """The default of an update's field that may be left out but not be null."""
    return Field(default=None, json_schema_extra=_no_default)


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


class DeployPreviewRequest(Body):
    path: Text = Field(min_length=1)
    #: A `%%flow` cell's flow; none: the whole notebook.
    flow_name: Text | None = Field(default=None, min_length=1, max_length=MAX_FLOW_NAME)
    #: Checked against the notebook's parameters (422 naming the valid ones).
    parameters: JSONObject = Field(default_factory=dict)


# ---- query strings ------------------------------------------------------------------------------


class Query(BaseModel):
    """Query parameters of a GET; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


#: A filter by name or id, in a query string: given, it is not empty.
QueryText = Annotated[Text, Field(min_length=1)]


class DeploymentsQuery(Query):
    flow_name: QueryText | None = None
    work_pool_name: QueryText | None = None


class DeploymentNotebookQuery(Query):
    version: Annotated[int, Field(ge=1, le=MAX_INT)] | None = Field(
        default=None, description="A version of the frozen notebook; the latest by default."
    )


class NotebookStoreQuery(Query):
    worker: QueryText | None = Field(
        default=None,
        max_length=200,
        description="The storing worker (refused unless it holds the run).",
    )
    fence: Annotated[int, Field(ge=MIN_INT, le=MAX_INT)] | None = Field(
        default=None, description="The fencing token of the worker's claim."
    )


class UpcomingQuery(Query):
    limit: Annotated[int, Field(ge=1, le=1000)] = 10


class FlowRunsQuery(Query):
    state: str | None = Field(
        default=None,
        json_schema_extra={"pattern": f"^({_STATE_NAMES})(,({_STATE_NAMES}))*$"},
        description="State types, comma separated.",
    )
    deployment_id: QueryText | None = None
    flow_name: QueryText | None = None
    work_pool_name: QueryText | None = None
    parent_run_id: QueryText | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    offset: Annotated[int, Field(ge=0, le=MAX_BIGINT)] = 0

    @field_validator("state")
    @classmethod
    def _known_states(cls, value: str | None) -> str | None:
        valid = STATE_NAMES
        unknown = [x for x in (value or "").split(",") if x not in valid]
        if unknown:
            raise ValueError(
                f"unknown state {', '.join(unknown)}; valid states: {', '.join(valid)}"
            )
        return value


class LogsQuery(Query):
    after: Annotated[int, Field(ge=0, le=MAX_BIGINT)] = Field(
        default=0, description="The `next_after` of the previous page."
    )
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000
    wait: Annotated[float, Field(ge=0, le=30)] = Field(
        default=0.0,
        description="Seconds to wait for a line after `after`, a state change or the end.",
    )
    state: StateType | None = Field(
        default=None, description="The state type the caller knows: a change ends the wait."
    )


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


class ImageBuildQuery(Query):
    after: Annotated[int, Field(ge=0, le=MAX_INT)] = Field(
        default=0, description="The `next_after` of the previous answer."
    )
    wait: Annotated[float, Field(ge=0, le=30)] = Field(
        default=0.0, description="Seconds to wait for a line after `after`, or the end."
    )


class ImageBuildReply(Reply):
    id: str
    state: Literal["RUNNING", "COMPLETED", "FAILED"]
    lines: list[str] = Field(description="Build and push output after `after`.")
    next_after: int
    image: JSONObject | None = Field(
        description="Once COMPLETED: the `image` of the deploy request (POST deployments)."
    )
    error: str | None


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


class Notebook(BaseModel):
    """A notebook as nbformat JSON (an `.ipynb` file's content)."""

    model_config = ConfigDict(extra="allow")

    cells: list[JSONObject]
    metadata: JSONObject = Field(default_factory=dict)
    nbformat: int = 4
    nbformat_minor: int = 5


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
