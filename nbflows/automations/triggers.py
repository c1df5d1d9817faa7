"""What fires a rule: a run's state change (in the transaction of the change), and conditions
that only time reveals (late, running too long, no worker), found by the scheduler pass.

Either way the rule's actions become outbox rows keyed by (rule, event, action): a state change
seen twice, a pass repeated by a restarted server or run by two servers at once, all insert the
same keys, and the store keeps one row of each.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, and_, exists, func, literal, select
from sqlalchemy.orm import Session, object_session

from nbflows.automations import rules
from nbflows.automations.tables import EVENT_KEY, Automation, AutomationDelivery
from nbflows.store import tables as t
from nbflows.store.db import insert_or_ignore

DELIVERIES = cast(Table, AutomationDelivery.__table__)
#: Runs a pass fires one rule for at most: the next pass takes the rest.
PASS_LIMIT = 500


def run_changed_state(run: t.FlowRun) -> None:
    """Called by `flow_runs.transition` once a run has entered a terminal state: the rules
    watching that state fire, in the same transaction as the change."""
    s = object_session(run)
    if s is None:
        return
    for rule in rules.rules_watching(s, "state"):
        if run.state_type in (rule.trigger.get("states") or []) and rules.in_scope(rule, run):
            fire(s, rule, f"{run.id}:{run.attempt}:{run.state_type}", run.state_type, run=run)


def fire(
    s: Session,
    rule: Automation,
    event_key: str,
    condition: str,
    *,
    run: t.FlowRun | None = None,
    pool_id: str | None = None,
) -> int:
    """Outbox rows for each action of `rule` for one event; returns how many were new."""
    now = t.utcnow()
    rows = [
        {
            "id": t.new_id(),
            "automation_id": rule.id,
            "event_key": event_key,
            "action_index": index,
            "condition": condition,
            "flow_run_id": run.id if run is not None else None,
            "work_pool_id": pool_id or (run.work_pool_id if run is not None else None),
            "action_type": action["type"],
            "target": describe_target(s, action, run),
            "status": "pending",
            "attempts": 0,
            "next_attempt": now,
            "created": now,
            "updated": now,
        }
        for index, action in enumerate(rule.actions)
    ]
    new = 0
    for row in rows:
        stmt = insert_or_ignore(s, DELIVERIES, EVENT_KEY).values(row).returning(DELIVERIES.c.id)
        new += len(s.execute(stmt).all())
    return new


def describe_target(s: Session, action: dict[str, Any], run: t.FlowRun | None) -> str:
    """What the action reaches, as the run's record shows it (credentials already masked)."""
    kind = action["type"]
    if kind == "notify":
        return str(action["url"])
    if kind == "cancel_run":
        return f"run {run.name}" if run is not None else "the triggering run"
    deployment_id = action.get("deployment_id") or (run.deployment_id if run else None)
    d = s.get(t.Deployment, deployment_id) if deployment_id else None
    return f"deployment {d.flow_name}/{d.name}" if d else "the triggering run's deployment"


def detect_conditions(s: Session, now: datetime | None = None) -> int:
    """The scheduler pass's part: fire rules whose condition has lasted long enough.
    Returns how many outbox rows were new."""
    now = now or t.utcnow()
    new = 0
    for rule in rules.rules_watching(s, "late"):
        new += _fire_for_runs(s, rule, now, "SCHEDULED", t.FlowRun.expected_start_time)
    for rule in rules.rules_watching(s, "running_too_long"):
        new += _fire_for_runs(s, rule, now, "RUNNING", t.FlowRun.start_time)
    for rule in rules.rules_watching(s, "no_worker"):
        new += _fire_for_pools(s, rule, now)
    return new


def _fire_for_runs(s: Session, rule: Automation, now: datetime, state: str, since: Any) -> int:
    condition = rule.trigger_kind
    cutoff = now - timedelta(seconds=float(rule.trigger["after"]))
    key = (
        t.FlowRun.id.concat(":")
        .concat(func.cast(t.FlowRun.attempt, String))
        .concat(literal(f":{condition}"))
    )
    already = exists().where(
        and_(
            AutomationDelivery.automation_id == rule.id,
            AutomationDelivery.event_key == key,
            AutomationDelivery.action_index == 0,
        )
    )
    query = (
        select(t.FlowRun)
        .where(t.FlowRun.state_type == state, since < cutoff, ~already)
        .order_by(since)
        .limit(PASS_LIMIT)
    )
    scope = rule.scope or {}
    if scope.get("deployment_id"):
        query = query.where(t.FlowRun.deployment_id == scope["deployment_id"])
    if scope.get("flow_name"):
        query = query.where(t.FlowRun.flow_name == scope["flow_name"])
    if scope.get("work_pool_id"):
        query = query.where(t.FlowRun.work_pool_id == scope["work_pool_id"])
    new = 0
    for run in s.scalars(query):
        if rules.in_scope(rule, run):
            new += fire(s, rule, f"{run.id}:{run.attempt}:{condition}", condition, run=run)
    return new


def _fire_for_pools(s: Session, rule: Automation, now: datetime) -> int:
    """A pool whose workers were last online before `now - after` (or that never had one since
    it was created) fires once per such stretch: the key holds when the last worker left."""
    cutoff = now - timedelta(seconds=float(rule.trigger["after"]))
    last_online = (
        select(func.max(t.Worker.online_until))
        .where(t.Worker.work_pool_id == t.WorkPool.id)
        .scalar_subquery()
    )
    query = select(t.WorkPool.id, t.WorkPool.created, last_online)
    pool_id = (rule.scope or {}).get("work_pool_id")
    if pool_id:
        query = query.where(t.WorkPool.id == pool_id)
    new = 0
    for pid, created, seen in s.execute(query):
        since = max(x for x in (seen, created) if x is not None)
        if since < cutoff and rules.in_scope(rule, None, pid):
            new += fire(s, rule, f"{pid}:no_worker:{since.isoformat()}", "no_worker", pool_id=pid)
    return new
