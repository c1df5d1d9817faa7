"""`nbflows work-pool ...`: create, list, inspect, update, pause, resume and delete work pools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text

from nbflows.cli import output as out
from nbflows.cli.common import client, confirm, read_json_file
from nbflows.errors import Conflict, InvalidInput

app = typer.Typer(
    help="Manage work pools: typed places where flow runs execute.", no_args_is_help=True
)

POOL_STATUS_STYLES = {"READY": "green", "NOT_READY": "yellow", "PAUSED": "grey50"}


def _status(pool: dict[str, Any]) -> Text:
    status = str(pool.get("status") or "")
    return Text(status, style=POOL_STATUS_STYLES.get(status, ""))


def _queues(pool: dict[str, Any]) -> str:
    return ", ".join(str(q.get("name")) for q in pool.get("queues") or [])


def worker_hint(pool: dict[str, Any]) -> None:
    name = pool.get("name")
    if pool.get("type") == "process":
        out.info(
            "\nThe nbflows server's embedded worker serves process pools, so runs in this pool "
            "start as soon as they are due."
        )
        out.info("To run a worker on another machine as well, run:\n")
    else:
        out.info("\nTo start a worker for this work pool, run:\n")
    out.info(f"        [blue]$ nbflows worker start --pool '{name}'[/]")


@app.command()
def create(
    name: str = typer.Argument(..., help="Name of the new work pool."),
    type: str = typer.Option(..., "--type", "-t", help="Pool type: process, docker, dask."),
    description: str | None = typer.Option(None, "--description", "-d"),
    base_job_template: str | None = typer.Option(
        None,
        "--base-job-template",
        help="JSON file with the base job template (default: the type's). '-' reads stdin.",
    ),
    concurrency_limit: int | None = typer.Option(
        None, "--concurrency-limit", "-l", min=0, help="At most this many runs at once."
    ),
    paused: bool = typer.Option(False, "--paused", help="Create the pool paused."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Update the pool if it exists instead of failing."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Create a work pool, e.g. `nbflows work-pool create my-pool --type process`."""
    template = (
        read_json_file(base_job_template, "--base-job-template") if base_job_template else None
    )
    api = client()
    verb = "Created"
    try:
        pool = api.create_work_pool(
            name,
            type,
            description=description,
            base_job_template=template,
            concurrency_limit=concurrency_limit,
            paused=paused,
        )
    except Conflict as exc:
        if not overwrite:
            raise Conflict(f"{exc.message} (--overwrite updates it instead)") from exc
        existing = api.read_work_pool(name)
        if existing.get("type") != type:
            raise InvalidInput(
                f"work pool '{name}' exists with type '{existing.get('type')}'; "
                f"--overwrite cannot change it to '{type}' (delete the pool first)"
            ) from exc
        fields: dict[str, Any] = {"paused": paused, "concurrency_limit": concurrency_limit}
        if description is not None:
            fields["description"] = description
        if template is not None:
            fields["base_job_template"] = template
        pool = api.update_work_pool(name, **fields)
        verb = "Updated"
    if output is out.Output.json:
        out.print_json(pool)
        return
    out.success(f"{verb} work pool '{pool.get('name', name)}'!")
    worker_hint(pool)


@app.command("ls")
def ls(output: out.Output = out.OUTPUT_OPTION) -> None:
    """List work pools."""
    pools = client().list_work_pools()
    if output is out.Output.json:
        out.print_json(pools)
        return
    out.table(
        pools,
        [
            ("Name", lambda p: p.get("name")),
            ("Type", lambda p: p.get("type")),
            ("Status", _status),
            ("Concurrency", lambda p: p.get("concurrency_limit")),
            ("Queues", _queues),
            ("Workers", lambda p: p.get("workers_online")),
            ("Running", lambda p: p.get("running_runs")),
        ],
        title="Work Pools",
        empty="No work pools yet. Create one with: nbflows work-pool create NAME --type process",
    )
    for pool in pools:
        if pool.get("status_reason"):
            out.info(
                f"[yellow]{escape(str(pool.get('name')))} is not served: "
                f"{escape(str(pool['status_reason']))}[/]"
            )


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Work pool name."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show a work pool: settings, queues, workers and base job template."""
    api = client()
    pool = api.read_work_pool(name)
    if output is out.Output.json:
        out.print_json(pool)
        return
    out.details(
        {**pool, "status": _status(pool).plain},
        [
            "name",
            "id",
            "type",
            "status",
            "status_reason",
            "description",
            "concurrency_limit",
            "paused",
            "workers_online",
            "running_runs",
            "created",
            "updated",
        ],
        title=f"Work pool '{pool.get('name')}'",
    )
    out.console.print()
    out.table(
        pool.get("queues") or [],
        [
            ("Queue", lambda q: q.get("name")),
            ("Priority", lambda q: q.get("priority")),
            ("Concurrency", lambda q: q.get("concurrency_limit")),
            ("Paused", lambda q: bool(q.get("paused"))),
            ("Description", lambda q: q.get("description")),
        ],
        title="Queues",
    )
    workers = api.list_workers(name)
    out.table(
        workers,
        [
            ("Worker", lambda w: w.get("name")),
            ("Status", lambda w: w.get("status")),
            ("Last heartbeat", lambda w: out.fmt_time(w.get("last_heartbeat"))),
            ("Running", lambda w: w.get("running")),
            ("Problem", lambda w: w.get("problem") or ""),
        ],
        title="Workers",
        empty="No workers have polled this pool yet.",
    )
    template = pool.get("base_job_template") or {}
    variables = (template.get("variables") or {}).get("properties") or {}
    out.table(
        [{"name": key, **spec} for key, spec in variables.items() if isinstance(spec, dict)],
        [
            ("Job variable", lambda v: v.get("name")),
            ("Type", lambda v: _json_type(v.get("type"))),
            ("Default", lambda v: json.dumps(v.get("default"))),
            ("Description", lambda v: v.get("description")),
        ],
        title="Job variables (deployments and runs may override these)",
        keep=("Job variable",),
        empty="The base job template declares no variables.",
    )
    out.info(
        "[dim]The whole base job template: nbflows work-pool inspect "
        f"{escape(name)} --output json[/]"
    )


def _json_type(kind: Any) -> str:
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    return "" if kind is None else str(kind)


@app.command()
def update(
    name: str = typer.Argument(..., help="Work pool name."),
    description: str | None = typer.Option(None, "--description", "-d"),
    base_job_template: str | None = typer.Option(
        None, "--base-job-template", help="JSON file with the new base job template."
    ),
    concurrency_limit: int | None = typer.Option(None, "--concurrency-limit", "-l", min=0),
    clear_concurrency_limit: bool = typer.Option(
        False, "--clear-concurrency-limit", help="Remove the concurrency limit."
    ),
) -> None:
    """Change a work pool's description, base job template or concurrency limit."""
    fields: dict[str, Any] = {}
    if description is not None:
        fields["description"] = description
    if base_job_template is not None:
        fields["base_job_template"] = read_json_file(base_job_template, "--base-job-template")
    if clear_concurrency_limit and concurrency_limit is not None:
        raise InvalidInput("give either --concurrency-limit or --clear-concurrency-limit, not both")
    if concurrency_limit is not None:
        fields["concurrency_limit"] = concurrency_limit
    if clear_concurrency_limit:
        fields["concurrency_limit"] = None
    if not fields:
        raise InvalidInput(
            "nothing to update; give --description, --base-job-template, --concurrency-limit "
            "or --clear-concurrency-limit"
        )
    client().update_work_pool(name, **fields)
    out.success(f"Updated work pool '{name}'.")


@app.command()
def pause(name: str = typer.Argument(..., help="Work pool name.")) -> None:
    """Pause a work pool: no new runs are handed to its workers."""
    client().update_work_pool(name, paused=True)
    out.success(f"Paused work pool '{name}'.")


@app.command()
def resume(name: str = typer.Argument(..., help="Work pool name.")) -> None:
    """Resume a paused work pool."""
    client().update_work_pool(name, paused=False)
    out.success(f"Resumed work pool '{name}'.")


@app.command()
def delete(
    name: str = typer.Argument(..., help="Work pool name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a work pool."""
    confirm(f"Delete work pool '{name}'?", yes)
    client().delete_work_pool(name)
    out.success(f"Deleted work pool '{name}'.")


@app.command("get-default-base-job-template")
def get_default_base_job_template(
    type: str = typer.Option(..., "--type", "-t", help="Pool type: process, docker, dask."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Write the template to this file instead of printing it."
    ),
) -> None:
    """Print (or save) the default base job template of a pool type, to edit and pass to
    `work-pool create --base-job-template`."""
    template = client().get_default_base_job_template(type)
    if file is None:
        out.print_json(template)
        return
    file.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    out.success(f"Wrote the default '{type}' base job template to {file}.")
