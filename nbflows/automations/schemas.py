"""Wire models of automations: the rule a user sends, and what the API answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictBool

from nbflows.services.schemas.bodies import Body
from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import MAX_FLOW_NAME, JSONObject, Name, Text, _number

#: The run states a `state` trigger may watch (the terminal ones).
TRIGGER_STATES = ("FAILED", "CRASHED", "COMPLETED", "CANCELLED")
#: Trigger kinds besides `state`: each fires once a condition has lasted `after` seconds.
CONDITION_KINDS = ("late", "running_too_long", "no_worker")
TriggerState = Literal["FAILED", "CRASHED", "COMPLETED", "CANCELLED"]
#: A duration of a condition: more than 0, at most 30 days.
After = Annotated[float, Field(gt=0, le=30 * 86400), BeforeValidator(_number)]
Ref = Annotated[Text, Field(min_length=1, max_length=400)]


class StateTrigger(Body):
    """A run entered one of `states`."""

    kind: Literal["state"]
    states: list[TriggerState] = Field(min_length=1, max_length=4)


class ConditionTrigger(Body):
    """late: a run is Late by more than `after` seconds; running_too_long: RUNNING for more
    than `after` seconds; no_worker: a pool had no online worker for `after` seconds."""

    kind: Literal["late", "running_too_long", "no_worker"]
    after: After


TriggerIn = Annotated[StateTrigger | ConditionTrigger, Field(discriminator="kind")]


class ScopeIn(Body):
    """Which runs or pools the rule watches; every given filter must match (none: all)."""

    deployment: Ref | None = Field(default=None, description="'flow/deployment' or an id")
    flow: Text | None = Field(default=None, min_length=1, max_length=MAX_FLOW_NAME)
    pool: Ref | None = Field(default=None, description="a work pool's name")
    tags: list[Annotated[Text, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50, description="the run has at least one of these"
    )


class NotifyAction(Body):
    type: Literal["notify"]
    url: Text = Field(
        min_length=3,
        max_length=2000,
        description="mailto://user:password@smtp-host:port?to=a@example.com&from=b@example.com "
        "(e-mail over SMTP), http(s)://... (a webhook POST, signed when `secret` is given), or "
        "any apprise URL (slack://, msteams://, discord://, ntfy://, json://...). Passwords and "
        "tokens in it are never shown back.",
    )
    secret: Text | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Webhook signing key: X-NBFlows-Signature is sha256=HMAC-SHA256(secret, "
        "'<X-NBFlows-Timestamp>.<body>'). Never shown back.",
    )


class RunDeploymentAction(Body):
    type: Literal["run_deployment"]
    deployment: Ref = Field(description="'flow/deployment' or an id")
    parameters: JSONObject = Field(
        default_factory=dict,
        description="Parameters of the new run; a text value '{{ run.parameters.NAME }}', "
        "'{{ run.id }}', '{{ run.name }}' or '{{ run.state }}' takes it from the triggering run.",
    )
    pass_parameters: StrictBool = Field(
        default=False,
        description="Also pass the triggering run's parameters the deployment declares.",
    )


class PauseDeploymentAction(Body):
    type: Literal["pause_deployment"]
    deployment: Ref | None = Field(
        default=None, description="'flow/deployment' or an id; default: the triggering run's"
    )


class CancelRunAction(Body):
    type: Literal["cancel_run"]


Action = Annotated[
    NotifyAction | RunDeploymentAction | PauseDeploymentAction | CancelRunAction,
    Field(discriminator="type"),
]


class AutomationCreate(Body):
    name: Name
    description: Text | None = Field(default=None, max_length=2000)
    enabled: StrictBool = True
    trigger: TriggerIn
    scope: ScopeIn = Field(default_factory=ScopeIn)
    actions: list[Action] = Field(min_length=1, max_length=20)


class AutomationUpdate(Body):
    enabled: StrictBool | None = None
    description: Text | None = Field(default=None, max_length=2000)


# ---- answers --------------------------------------------------------------------------------


class AutomationReply(Reply):
    id: str
    name: str
    description: str | None
    enabled: bool
    trigger: JSONObject
    scope: JSONObject
    actions: list[JSONObject] = Field(description="credentials masked as '***'")
    created: Timestamp | None
    updated: Timestamp | None


class DeliveryReply(Reply):
    id: str
    automation_id: str
    automation_name: str | None
    condition: str
    flow_run_id: str | None
    work_pool_id: str | None
    action_type: str
    target: str = Field(description="what was notified or acted on, credentials masked")
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    next_attempt: Timestamp | None
    last_error: str | None = Field(description="why the last attempt failed")
    finished: Timestamp | None = Field(description="when it was delivered or given up")
    created: Timestamp | None
