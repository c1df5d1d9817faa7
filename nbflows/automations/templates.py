"""The message a notification carries: the run's name and state, the error line, the tail of
its logs and its dashboard link; the same facts as a webhook's JSON body."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nbflows.services.schemas.values import iso
from nbflows.store import tables as t

#: Log lines a message ends with.
LOG_TAIL = 20
#: Characters of one log line kept in a message.
LINE_WIDTH = 300

_WHAT = {
    "late": "is late",
    "running_too_long": "is running too long",
    "no_worker": "has no worker",
}


def event_facts(
    s: Session, delivery: Any, rule_name: str, dashboard_url: str | None
) -> dict[str, Any]:
    """Everything a message says about one event, read once, as plain JSON values."""
    facts: dict[str, Any] = {
        "event": delivery.condition,
        "automation": rule_name,
        "delivery_id": delivery.id,
        "occurred": iso(delivery.created),
    }
    run = s.get(t.FlowRun, delivery.flow_run_id) if delivery.flow_run_id else None
    if run is not None:
        deployment = s.get(t.Deployment, run.deployment_id) if run.deployment_id else None
        lines = s.scalars(
            select(t.LogLine.message)
            .where(t.LogLine.flow_run_id == run.id)
            .order_by(t.LogLine.id.desc())
            .limit(LOG_TAIL)
        ).all()
        facts["run"] = {
            "id": run.id,
            "name": run.name,
            "flow_name": run.flow_name,
            "deployment": f"{deployment.flow_name}/{deployment.name}" if deployment else None,
            "state": run.state_type,
            "state_name": run.state_name,
            "message": run.state_message,
            "error": error_line(run),
            "attempt": run.attempt,
            "parameters": run.parameters,
            "tags": run.tags,
            "expected_start_time": iso(run.expected_start_time),
            "start_time": iso(run.start_time),
            "end_time": iso(run.end_time),
            "logs_tail": [line[:LINE_WIDTH] for line in reversed(lines)],
            "url": f"{dashboard_url}runs/{run.id}" if dashboard_url else None,
        }
    pool_id = delivery.work_pool_id or (run.work_pool_id if run else None)
    pool = s.get(t.WorkPool, pool_id) if pool_id else None
    if pool is not None:
        facts["work_pool"] = {
            "name": pool.name,
            "url": f"{dashboard_url}pools" if dashboard_url else None,
        }
    return facts


def error_line(run: t.FlowRun) -> str | None:
    """The line that says what went wrong: the first of the state's message of an unsuccessful
    run (the worker puts the exception there, e.g. 'ZeroDivisionError: division by zero')."""
    if run.state_type not in ("FAILED", "CRASHED") or not run.state_message:
        return None
    return run.state_message.strip().splitlines()[0][:LINE_WIDTH]


def subject(facts: dict[str, Any]) -> str:
    run = facts.get("run")
    event = facts["event"]
    if run is not None:
        what = _WHAT.get(event, run["state"])
        return f"nbflows: run {run['name']} of {run['deployment'] or run['flow_name']} {what}"
    pool = facts.get("work_pool", {}).get("name", "?")
    return f"nbflows: work pool {pool} {_WHAT.get(event, event)}"


def text(facts: dict[str, Any]) -> str:
    """The plain-text message of e-mails and apprise notifications."""
    lines = [subject(facts).removeprefix("nbflows: ").capitalize() + ".", ""]
    run = facts.get("run")
    if run is not None:
        lines += [
            f"Run:        {run['name']} ({run['id']})",
            f"Flow:       {run['flow_name']}",
            f"Deployment: {run['deployment'] or '-'}",
            f"State:      {run['state']} ({run['state_name']}), attempt {run['attempt']}",
        ]
        if run["error"]:
            lines.append(f"Error:      {run['error']}")
        elif run["message"]:
            lines.append(f"Message:    {run['message'].strip().splitlines()[0]}")
        if run["url"]:
            lines.append(f"Dashboard:  {run['url']}")
        if run["logs_tail"]:
            lines += ["", f"Last {len(run['logs_tail'])} log lines:"]
            lines += [f"  {line.rstrip()}" for line in run["logs_tail"]]
    pool = facts.get("work_pool")
    if pool is not None and run is None:
        lines.append(f"Work pool:  {pool['name']}")
        if pool["url"]:
            lines.append(f"Dashboard:  {pool['url']}")
    lines += ["", f"(automation '{facts['automation']}', event {facts['event']})"]
    return "\n".join(lines) + "\n"


def webhook_body(facts: dict[str, Any]) -> dict[str, Any]:
    return {**facts, "subject": subject(facts), "text": text(facts)}
