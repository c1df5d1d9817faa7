"""`nbflows deployment ...`: list, inspect, run, pause, resume and delete deployments."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text

from nbflows.cli import output as out
from nbflows.cli.common import client, confirm, parse_json_object
from nbflows.cli.flow_run import finish, follow, run_label
from nbflows.client.rest import Client
from nbflows.errors import NBFlowsError
from nbflows.notebooks.parameters import parse_key_values

app = typer.Typer(help="Manage deployments and run them.", no_args_is_help=True)

REF_ARGUMENT = typer.Argument(..., metavar="FLOW/NAME", help="'flow-name/deployment-name' or id.")


def _schedules(dep: dict[str, Any]) -> str:
    return "; ".join(out.schedule_text(s) for s in dep.get("schedules") or [])


def _status(dep: dict[str, Any]) -> Text:
    return Text("paused", style="grey50") if dep.get("paused") else Text("active", style="green")


@app.command("ls")
def ls(
    flow: str | None = typer.Option(None, "--flow", "-f", help="Only deployments of this flow."),
    pool: str | None = typer.Option(None, "--pool", "-p", help="Only deployments to this pool."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """List deployments."""
    deployments = client().list_deployments(flow_name=flow, work_pool_name=pool)
    if output is out.Output.json:
        out.print_json(deployments)
        return
    out.table(
        sorted(deployments, key=lambda d: str(d.get("full_name"))),
        [
            ("Name", lambda d: d.get("full_name")),
            ("Pool", lambda d: d.get("work_pool_name")),
            ("Queue", lambda d: d.get("work_queue_name")),
            ("Schedules", _schedules),
            ("Status", _status),
            ("Version", lambda d: d.get("version")),
            ("Updated", lambda d: out.fmt_time_short(d.get("updated"))),
        ],
        title="Deployments",
        keep=("Name",),
        empty="No deployments yet. Create one with: "
        "nbflows deploy NOTEBOOK[:FLOW] --name N --pool P",
    )


@app.command()
def inspect(
    ref: str = REF_ARGUMENT,
    notebook: bool = typer.Option(
        False, "--notebook", help="Show the frozen notebook that runs of this deployment execute."
    ),
    version: int | None = typer.Option(
        None, "--version", help="With --notebook: the notebook of this deployment version."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show a deployment, or with --notebook the code it runs."""
    api = client()
    if notebook:
        nb = api.read_deployment_notebook(ref, version=version)
        if output is out.Output.json:
            out.print_json(nb)
        else:
            out.notebook(nb, outputs=False)
        return
    dep = api.read_deployment(ref)
    if output is out.Output.json:
        out.print_json(dep)
        return
    out.details(
        {**dep, "schedules": _schedules(dep)},
        [
            "full_name",
            "id",
            "kind",
            "entrypoint",
            "path",
            "working_dir",
            "work_pool_name",
            "work_queue_name",
            "parameters",
            "job_variables",
            "schedules",
            "paused",
            "catchup",
            "version",
            "version_label",
            "tags",
            "description",
            "retries",
            "retry_delay",
            "image",
            "created",
            "updated",
        ],
        title=f"Deployment '{dep.get('full_name')}'",
    )
    if dep.get("schedules"):
        upcoming = api.upcoming_runs(str(dep["id"]), limit=5)
        out.console.print()
        out.table(
            upcoming,
            [
                ("Upcoming run", lambda r: r.get("name")),
                ("Expected start", lambda r: out.fmt_time(r.get("expected_start_time"))),
                ("State", lambda r: out.state_text(r.get("state"))),
            ],
            title="Upcoming runs",
            empty="No upcoming runs scheduled yet.",
            keep=(),
        )
    schema = dep.get("parameter_schema") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    values = dep.get("parameters") or {}
    if properties:
        out.console.print()
        out.table(
            [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in properties.items()],
            [
                ("Parameter", lambda p: p.get("name")),
                ("Type", lambda p: p.get("type")),
                ("Notebook default", lambda p: json.dumps(p.get("default"))),
                (
                    "Deployment value",
                    lambda p: json.dumps(values[p["name"]]) if p["name"] in values else "",
                ),
            ],
            title="Parameters",
        )


@app.command()
def run(
    ref: str = REF_ARGUMENT,
    param: list[str] | None = typer.Option(
        None, "--param", help="Parameter KEY=VALUE (VALUE is JSON if it parses). Repeat."
    ),
    params: str | None = typer.Option(None, "--params", help="Parameters as one JSON object."),
    job_variable: list[str] | None = typer.Option(
        None, "--job-variable", "-jv", help="Job variable KEY=VALUE for this run. Repeat."
    ),
    tag: list[str] | None = typer.Option(None, "--tag", "-t", help="Tag of the run. Repeatable."),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Runs with the same key are created once."
    ),
    watch: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="Print states and logs until the run ends; exit 0 only if it completed.",
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        min=0,
        help="Watch at most this many seconds (implies --watch); exit 1 if not done.",
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Create a flow run of a deployment, e.g. `nbflows deployment run 'flow/name' --watch`."""
    api = client()
    json_out = output is out.Output.json
    if not json_out:
        out.info(f"Creating flow run for deployment '{escape(ref)}'...")
    # Read it first: its parameter schema says which typed values are meant as text.
    dep = api.read_deployment(ref)
    schema = dep.get("parameter_schema") if isinstance(dep.get("parameter_schema"), dict) else None
    parameters = {
        **parse_json_object(params, "--params"),
        **parse_key_values(param, "--param", schema),
    }
    job_variables = parse_key_values(job_variable, "--job-variable")
    flow_run = api.create_flow_run_from_deployment(
        str(dep["id"]),
        parameters=parameters or None,
        job_variables=job_variables or None,
        idempotency_key=idempotency_key,
        tags=tag or None,
    )
    run_id = str(flow_run.get("id"))
    if json_out:
        if watch or timeout is not None:
            flow_run = api.watch_flow_run(run_id, timeout=timeout)
        out.print_json(flow_run)
        kind = (flow_run.get("state") or {}).get("type")
        if (watch or timeout is not None) and kind != "COMPLETED":
            raise typer.Exit(1)
        return
    out.success(f"Created {escape(run_label(flow_run))}.")
    tree = [
        ("UUID", run_id),
        ("Parameters", out.fmt_value(flow_run.get("parameters")) or "{}"),
        ("Job Variables", out.fmt_value(flow_run.get("job_variables")) or "{}"),
        ("Scheduled start time", out.fmt_time(flow_run.get("expected_start_time"))),
    ]
    for key, value in tree:
        out.info(f"└── {key}: {escape(str(value))}")
    _warn_if_nobody_serves(api, str(flow_run.get("work_pool_name") or dep.get("work_pool_name")))
    if not (watch or timeout is not None):
        out.info(f"\nFollow it with: [blue]nbflows flow-run logs {escape(run_id)} --follow[/]")
        return
    out.info(f"Watching {escape(run_label(flow_run))}...")
    final = follow(api, run_id, timeout, states=True)
    finish(final, timeout)


@app.command()
def pause(ref: str = REF_ARGUMENT) -> None:
    """Pause a deployment's schedules (runs can still be started by hand)."""
    dep = client().update_deployment(ref, paused=True) or {}
    out.success(f"Paused deployment '{escape(str(dep.get('full_name') or ref))}'.")


@app.command()
def resume(ref: str = REF_ARGUMENT) -> None:
    """Resume a deployment's schedules."""
    dep = client().update_deployment(ref, paused=False) or {}
    out.success(f"Resumed deployment '{escape(str(dep.get('full_name') or ref))}'.")


@app.command()
def delete(
    ref: str = REF_ARGUMENT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a deployment."""
    confirm(f"Delete deployment '{ref}'?", yes)
    client().delete_deployment(ref)
    out.success(f"Deleted deployment '{escape(ref)}'.")


def _warn_if_nobody_serves(api: Client, pool_name: str) -> None:
    """Say so when the run cannot start soon: its pool is paused or no worker serves it."""
    try:
        pool = api.read_work_pool(pool_name)
    except NBFlowsError:
        return  # only a hint
    quoted = escape(f"'{pool_name}'")
    if pool.get("paused"):
        out.info(
            f"[yellow]Work pool {quoted} is paused: the run waits until "
            f"`nbflows work-pool resume {quoted}`.[/]"
        )
    elif not pool.get("workers_online"):
        out.info(
            f"[yellow]No worker is serving work pool {quoted} right now; start one with: "
            f"nbflows worker start --pool {quoted}[/]"
        )
