"""Query strings: the parameters each GET of the API accepts (unknown ones are ignored)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from nbflows.protocol import StateType
from nbflows.services.schemas.values import (
    MAX_BIGINT,
    MAX_INT,
    MIN_INT,
    STATE_NAMES,
    STATE_NAMES_PATTERN,
    Text,
)

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


class ExportStoreQuery(Query):
    worker: QueryText = Field(
        max_length=200,
        description="The worker sending it (refused unless it holds the run): only workers "
        "send exports, after the runs they made.",
    )
    fence: Annotated[int, Field(ge=MIN_INT, le=MAX_INT)] | None = Field(
        default=None, description="The fencing token of the worker's claim."
    )


class UpcomingQuery(Query):
    limit: Annotated[int, Field(ge=1, le=1000)] = 10


class FlowRunsQuery(Query):
    state: str | None = Field(
        default=None,
        json_schema_extra={"pattern": f"^({STATE_NAMES_PATTERN})(,({STATE_NAMES_PATTERN}))*$"},
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


class ImageBuildQuery(Query):
    after: Annotated[int, Field(ge=0, le=MAX_INT)] = Field(
        default=0, description="The `next_after` of the previous answer."
    )
    wait: Annotated[float, Field(ge=0, le=30)] = Field(
        default=0.0, description="Seconds to wait for a line after `after`, or the end."
    )


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
