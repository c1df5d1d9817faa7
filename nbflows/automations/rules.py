"""Automation rules: create, read, pause/resume, delete; what the API shows of them (masked);
and which rules watch a given run or pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nbflows.automations import channels
from nbflows.automations.schemas import AutomationCreate, AutomationUpdate
from nbflows.automations.tables import Automation
from nbflows.errors import Conflict, InvalidInput, NotFound
from nbflows.services import deployments, secrets, work_pools
from nbflows.services.schemas.values import iso
from nbflows.store import tables as t


def create_automation(s: Session, req: AutomationCreate) -> Automation:
    if s.scalar(select(Automation.id).where(Automation.name == req.name)) is not None:
        raise Conflict(f"an automation named '{req.name}' exists; choose another name")
    actions: list[dict[str, Any]] = []
    credentials: list[dict[str, Any]] = []
    for index, action in enumerate(req.actions):
        body = action.model_dump(exclude_none=True)
        where = f"actions.{index}"
        if body["type"] == "notify":
            public, secret = channels.split_credentials(body["url"], body.get("secret"), where)
            secrets.check_references(s, secret)  # 422 naming an unknown `{{ secret.NAME }}`
            actions.append({"type": "notify", **public})
            credentials.append(secret)
            continue
        if body.get("deployment"):
            body["deployment_id"] = _deployment_id(s, body.pop("deployment"), where)
        actions.append(body)
        credentials.append({})
    rule = Automation(
        name=req.name,
        description=req.description,
        enabled=req.enabled,
        trigger_kind=req.trigger.kind,
        trigger=req.trigger.model_dump(exclude_none=True),
        scope=_resolve_scope(s, req),
        actions=actions,
        credentials=credentials,
    )
    s.add(rule)
    s.flush()
    return rule


def _deployment_id(s: Session, ref: str, where: str) -> str:
    try:
        return deployments.get_deployment(s, ref).id
    except NotFound as err:
        raise InvalidInput(f"{where}.deployment: {err.message}") from None


def _resolve_scope(s: Session, req: AutomationCreate) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    given = req.scope
    if given.deployment:
        scope["deployment_id"] = _deployment_id(s, given.deployment, "scope")
    if given.flow:
        scope["flow_name"] = given.flow
    if given.pool:
        try:
            scope["work_pool_id"] = work_pools.get_work_pool(s, given.pool).id
        except NotFound as err:
            raise InvalidInput(f"scope.pool: {err.message}") from None
    if given.tags:
        scope["tags"] = sorted(set(given.tags))
    return scope


def get_automation(s: Session, ref: str) -> Automation:
    """By name or id."""
    rule = s.scalar(select(Automation).where(Automation.name == ref)) or s.get(Automation, ref)
    if rule is None:
        names = s.scalars(select(Automation.name).order_by(Automation.name).limit(20)).all()
        known = ", ".join(names) if names else "none yet (`nbflows automation create`)"
        raise NotFound(f"no automation '{ref}'; automations: {known}")
    return rule


def list_automations(s: Session) -> list[Automation]:
    return list(s.scalars(select(Automation).order_by(Automation.name)))


def update_automation(s: Session, ref: str, req: AutomationUpdate) -> Automation:
    rule = get_automation(s, ref)
    if req.enabled is not None:
        rule.enabled = req.enabled
    if "description" in req.model_fields_set:
        rule.description = req.description
    s.flush()
    return rule


def delete_automation(s: Session, ref: str) -> None:
    s.delete(get_automation(s, ref))


def rules_watching(s: Session, kind: str) -> list[Automation]:
    return list(
        s.scalars(
            select(Automation).where(Automation.trigger_kind == kind, Automation.enabled.is_(True))
        )
    )


def in_scope(rule: Automation, run: t.FlowRun | None, pool_id: str | None = None) -> bool:
    """Whether `rule` watches this run (or, for pool triggers, this pool)."""
    scope = rule.scope or {}
    if run is None:
        return scope.get("work_pool_id") in (None, pool_id) and not (
            scope.get("deployment_id") or scope.get("flow_name") or scope.get("tags")
        )
    if scope.get("deployment_id") and scope["deployment_id"] != run.deployment_id:
        return False
    if scope.get("flow_name") and scope["flow_name"] != run.flow_name:
        return False
    if scope.get("work_pool_id") and scope["work_pool_id"] != run.work_pool_id:
        return False
    return not scope.get("tags") or bool(set(scope["tags"]) & set(run.tags or []))


def automation_json(s: Session, rule: Automation) -> dict[str, Any]:
    """The rule as the API shows it: names instead of ids, credentials never included."""
    scope = dict(rule.scope or {})
    if "deployment_id" in scope:
        scope["deployment"] = _deployment_name(s, scope["deployment_id"])
    if "work_pool_id" in scope:
        pool = s.get(t.WorkPool, scope["work_pool_id"])
        scope["pool"] = pool.name if pool else None
    actions = []
    for action in rule.actions:
        shown = dict(action)
        if "deployment_id" in shown:
            shown["deployment"] = _deployment_name(s, shown["deployment_id"])
        actions.append(shown)
    return {
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "trigger": rule.trigger,
        "scope": scope,
        "actions": actions,
        "created": iso(rule.created),
        "updated": iso(rule.updated),
    }


def _deployment_name(s: Session, deployment_id: str) -> str | None:
    d = s.get(t.Deployment, deployment_id)
    return f"{d.flow_name}/{d.name}" if d else None


def describe_trigger(trigger: dict[str, Any]) -> str:
    """One line, e.g. 'run enters FAILED or CRASHED', 'run Late by more than 60 s'."""
    kind = trigger.get("kind")
    if kind == "state":
        return "run enters " + " or ".join(trigger.get("states") or [])
    after = f"{trigger.get('after', 0):g} s"
    return {
        "late": f"run Late by more than {after}",
        "running_too_long": f"run RUNNING longer than {after}",
        "no_worker": f"pool without a worker for {after}",
    }.get(str(kind), str(kind))
