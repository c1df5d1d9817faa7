"""What a delivery does: notify somewhere, or act on the store (run or pause a deployment,
cancel the run). Store actions happen in the transaction that records them as delivered."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from nbflows.automations import channels, templates
from nbflows.errors import InvalidInput
from nbflows.services import deployments, flow_runs
from nbflows.services.schemas.bodies import DeploymentUpdate, RunRequest
from nbflows.store import tables as t

_FROM_RUN = re.compile(r"^\{\{\s*run\.(id|name|state|parameters\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}$")


def notify(action: dict[str, Any], hidden: dict[str, Any], facts: dict[str, Any]) -> None:
    """Send the message of `facts` to the action's target; raises `channels.DeliveryFailed`."""
    url = hidden["url"]
    kind = channels.channel_of(url)
    if kind == "email":
        channels.send_email(url, templates.subject(facts), templates.text(facts))
    elif kind == "webhook":
        channels.send_webhook(
            url, hidden.get("secret"), templates.webhook_body(facts), facts["delivery_id"]
        )
    else:
        channels.send_apprise(url, templates.subject(facts), templates.text(facts))


def act(s: Session, action: dict[str, Any], run: t.FlowRun | None, delivery_id: str) -> None:
    """A store action for one event; raises a domain error when it cannot be done."""
    kind = action["type"]
    if kind == "cancel_run":
        if run is None:
            raise InvalidInput("cancel_run needs a run; this event is about a work pool")
        flow_runs.cancel(s, run.id)
        return
    deployment_id = action.get("deployment_id") or (run.deployment_id if run else None)
    if deployment_id is None:
        raise InvalidInput(f"{kind}: the triggering run has no deployment, and none is named")
    if kind == "pause_deployment":
        deployments.update_deployment(s, deployment_id, DeploymentUpdate(paused=True))
        return
    d = deployments.get_deployment(s, deployment_id)
    parameters = {
        key: value_from_run(value, run) for key, value in action.get("parameters", {}).items()
    }
    if action.get("pass_parameters") and run is not None:
        declared = set((d.parameter_schema or {}).get("properties", {})) or set(d.parameters)
        parameters = {
            **{k: v for k, v in run.parameters.items() if k in declared},
            **parameters,
        }
    # The delivery's id as idempotency key: a repeated delivery finds the run it made.
    flow_runs.create_deployment_run(
        s, d, RunRequest(parameters=parameters), idempotency_key=f"automation:{delivery_id}"
    )


def value_from_run(value: Any, run: t.FlowRun | None) -> Any:
    """`{{ run.parameters.NAME }}`, `{{ run.id }}`, `{{ run.name }}` or `{{ run.state }}` taken
    from the triggering run; any other value as it is."""
    found = _FROM_RUN.match(value) if isinstance(value, str) else None
    if found is None:
        return value
    if run is None:
        raise InvalidInput(f"'{value}' needs a triggering run; this event is about a work pool")
    if found.group(2):
        if found.group(2) not in run.parameters:
            known = ", ".join(sorted(run.parameters)) or "none"
            raise InvalidInput(
                f"'{value}': the triggering run has no parameter '{found.group(2)}' "
                f"(its parameters: {known})"
            )
        return run.parameters[found.group(2)]
    return {"id": run.id, "name": run.name, "state": run.state_type}[found.group(1)]
