"""`nbflows automation ...`: rules that notify or act when runs fail, are late or run too long,
or a pool has no worker."""

from __future__ import annotations

from typing import Any

import typer

from nbflows.cli import output as out
from nbflows.cli.common import client, confirm
from nbflows.errors import InvalidInput
from nbflows.notebooks.parameters import parse_key_values

app = typer.Typer(
    help="Automations: notify (e-mail, webhook, apprise) or act when runs fail, are late, run "
    "too long, or a pool has no worker.",
    no_args_is_help=True,
)

STATES = ("FAILED", "CRASHED", "COMPLETED", "CANCELLED")

AUTOMATION_COLUMNS: list[out.Column] = [
    ("Name", lambda a: a.get("name")),
    ("Enabled", lambda a: bool(a.get("enabled"))),
    ("Trigger", lambda a: describe_trigger(a.get("trigger") or {})),
    ("Scope", lambda a: describe_scope(a.get("scope") or {})),
    ("Actions", lambda a: "; ".join(describe_action(x) for x in a.get("actions") or [])),
]

DELIVERY_COLUMNS: list[out.Column] = [
    ("When", lambda d: out.fmt_time(d.get("finished") or d.get("created"))),
    ("Event", lambda d: d.get("condition")),
    ("Run", lambda d: d.get("flow_run_id") or "-"),
    ("Target", lambda d: d.get("target")),
    ("Status", lambda d: d.get("status")),
    ("Attempts", lambda d: d.get("attempts")),
    ("Why", lambda d: d.get("last_error") or ""),
]


def describe_trigger(trigger: dict[str, Any]) -> str:
    if trigger.get("kind") == "state":
        return "enters " + " or ".join(trigger.get("states") or [])
    after = f"{trigger.get('after', 0):g} s"
    return {
        "late": f"Late > {after}",
        "running_too_long": f"RUNNING > {after}",
        "no_worker": f"no worker for {after}",
    }.get(str(trigger.get("kind")), str(trigger.get("kind")))


def describe_scope(scope: dict[str, Any]) -> str:
    parts = [
        f"{label} {scope[key]}"
        for key, label in (("deployment", "deployment"), ("flow_name", "flow"), ("pool", "pool"))
        if scope.get(key)
    ]
    if scope.get("tags"):
        parts.append("tags " + ",".join(scope["tags"]))
    return ", ".join(parts) or "everything"


def describe_action(action: dict[str, Any]) -> str:
    kind = action.get("type")
    if kind == "notify":
        return f"notify {action.get('url')}" + (" (signed)" if action.get("signed") else "")
    if kind == "cancel_run":
        return "cancel the run"
    target = action.get("deployment") or "its deployment"
    return f"{'run' if kind == 'run_deployment' else 'pause'} {target}"


def _trigger(
    on: list[str] | None, late: float | None, running: float | None, no_worker: float | None
) -> dict[str, Any]:
    given = [
        (kind, value)
        for kind, value in (("late", late), ("running_too_long", running), ("no_worker", no_worker))
        if value is not None
    ]
    if bool(on) + len(given) != 1:
        raise InvalidInput(
            "give one trigger: --on STATE (repeatable), --late SECONDS, --running-longer SECONDS "
            "or --no-worker SECONDS"
        )
    if on:
        states = sorted({state.upper() for state in on})
        unknown = [state for state in states if state not in STATES]
        if unknown:
            raise InvalidInput(
                f"--on: unknown state {', '.join(unknown)}; valid: {', '.join(STATES)}"
            )
        return {"kind": "state", "states": states}
    kind, after = given[0]
    return {"kind": kind, "after": after}


@app.command()
def create(
    name: str = typer.Argument(..., help="Name of the new automation."),
    on: list[str] | None = typer.Option(
        None,
        "--on",
        help="Fire when a run enters this state: failed, crashed, completed, "
        "cancelled (repeatable).",
    ),
    late: float | None = typer.Option(
        None, "--late", help="Fire when a run is Late by more than this many seconds."
    ),
    running_longer: float | None = typer.Option(
        None, "--running-longer", help="Fire when a run is RUNNING longer than this (seconds)."
    ),
    no_worker: float | None = typer.Option(
        None, "--no-worker", help="Fire when a pool has had no worker for this long (seconds)."
    ),
    deployment: str | None = typer.Option(
        None, "--deployment", help="Only runs of this deployment ('flow/deployment')."
    ),
    flow: str | None = typer.Option(None, "--flow", help="Only runs of this flow."),
    pool: str | None = typer.Option(None, "--pool", help="Only runs of (or only) this pool."),
    tag: list[str] | None = typer.Option(
        None, "--tag", help="Only runs with this tag (repeatable: any of them)."
    ),
    notify: list[str] | None = typer.Option(
        None,
        "--notify",
        help="Notify this URL (repeatable): mailto://user:pass@smtp-host:port"
        "?to=..&from=.., https://... (webhook), or any apprise URL (slack://, ntfy://, json://).",
    ),
    secret: str | None = typer.Option(
        None,
        "--secret",
        envvar="NBFLOWS_WEBHOOK_SECRET",
        help="Sign the http(s) webhooks of --notify with this key (HMAC-SHA256; env "
        "NBFLOWS_WEBHOOK_SECRET keeps it off the command line).",
    ),
    run_deployment: str | None = typer.Option(
        None, "--run-deployment", help="Run this deployment ('flow/deployment')."
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        help="NAME=VALUE for --run-deployment; a value like "
        "'{{ run.parameters.x }}' is taken from the triggering run.",
    ),
    pass_parameters: bool = typer.Option(
        False, "--pass-parameters", help="--run-deployment gets the triggering run's parameters."
    ),
    pause_deployment: bool = typer.Option(
        False, "--pause-deployment", help="Pause the triggering run's deployment."
    ),
    cancel_run: bool = typer.Option(False, "--cancel-run", help="Cancel the triggering run."),
    description: str | None = typer.Option(None, "--description", "-d"),
    paused: bool = typer.Option(False, "--paused", help="Create it paused."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Create an automation: one trigger, an optional scope, one or more actions.

    Example: nbflows automation create nightly-failed --on failed --deployment sales/nightly
    --notify 'mailto://bot:PASSWORD@smtp.example.com:587?to=ops@example.com&security=starttls'
    """
    actions: list[dict[str, Any]] = []
    for url in notify or []:
        action: dict[str, Any] = {"type": "notify", "url": url}
        if secret and url.lower().startswith(("http://", "https://")):
            action["secret"] = secret
        actions.append(action)
    if run_deployment:
        actions.append(
            {
                "type": "run_deployment",
                "deployment": run_deployment,
                "parameters": parse_key_values(param, "--param"),
                "pass_parameters": pass_parameters,
            }
        )
    elif param or pass_parameters:
        raise InvalidInput("--param and --pass-parameters go with --run-deployment")
    if pause_deployment:
        actions.append({"type": "pause_deployment"})
    if cancel_run:
        actions.append({"type": "cancel_run"})
    if not actions:
        raise InvalidInput(
            "give at least one action: --notify URL, --run-deployment, --pause-deployment or "
            "--cancel-run"
        )
    scope: dict[str, Any] = {
        key: value
        for key, value in (("deployment", deployment), ("flow", flow), ("pool", pool))
        if value
    }
    if tag:
        scope["tags"] = list(tag)
    rule = client().create_automation(
        name,
        _trigger(on, late, running_longer, no_worker),
        actions,
        scope=scope,
        description=description,
        enabled=not paused,
    )
    if output is out.Output.json:
        out.print_json(rule)
        return
    out.success(
        f"Created automation '{rule['name']}': {describe_trigger(rule['trigger'])} → "
        + "; ".join(describe_action(a) for a in rule["actions"])
    )


@app.command("ls")
def ls(output: out.Output = out.OUTPUT_OPTION) -> None:
    """List automations."""
    rules = client().list_automations()
    if output is out.Output.json:
        out.print_json(rules)
        return
    out.table(rules, AUTOMATION_COLUMNS, title="Automations")


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Automation name or id."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show an automation and its latest deliveries (credentials masked)."""
    rule = client().read_automation(name)
    deliveries = client().list_automation_deliveries(name)
    if output is out.Output.json:
        out.print_json({**rule, "deliveries": deliveries})
        return
    shown = {
        **rule,
        "trigger": describe_trigger(rule.get("trigger") or {}),
        "scope": describe_scope(rule.get("scope") or {}),
        "actions": "; ".join(describe_action(a) for a in rule.get("actions") or []),
    }
    out.details(
        shown,
        ["name", "id", "enabled", "trigger", "scope", "actions", "description", "created"],
        title=f"Automation '{rule['name']}'",
    )
    out.table(deliveries, DELIVERY_COLUMNS, title="Latest deliveries")


@app.command()
def pause(name: str = typer.Argument(..., help="Automation name or id.")) -> None:
    """Pause an automation: it fires no more until resumed."""
    client().update_automation(name, enabled=False)
    out.success(f"Paused automation '{name}'.")


@app.command()
def resume(name: str = typer.Argument(..., help="Automation name or id.")) -> None:
    """Resume a paused automation."""
    client().update_automation(name, enabled=True)
    out.success(f"Resumed automation '{name}'.")


@app.command()
def delete(
    name: str = typer.Argument(..., help="Automation name or id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete an automation (and its pending deliveries)."""
    confirm(f"Delete automation '{name}'?", yes)
    client().delete_automation(name)
    out.success(f"Deleted automation '{name}'.")
