"""`nbflows work-queue ...`: the prioritised queues inside a work pool."""

from __future__ import annotations

from typing import Any

import typer

from nbflows.cli import output as out
from nbflows.cli.common import client, confirm
from nbflows.errors import InvalidInput

app = typer.Typer(
    help="Manage work queues: priorities and concurrency limits inside a work pool.",
    no_args_is_help=True,
)

POOL_OPTION = typer.Option(..., "--pool", "-p", help="The work pool the queue belongs to.")

QUEUE_COLUMNS: list[out.Column] = [
    ("Name", lambda q: q.get("name")),
    ("Pool", lambda q: q.get("work_pool_name")),
    ("Priority", lambda q: q.get("priority")),
    ("Concurrency", lambda q: q.get("concurrency_limit")),
    ("Paused", lambda q: bool(q.get("paused"))),
    ("Description", lambda q: q.get("description")),
]


@app.command()
def create(
    name: str = typer.Argument(..., help="Name of the new queue."),
    pool: str = POOL_OPTION,
    priority: int | None = typer.Option(
        None, "--priority", min=1, help="1 is the highest priority (served first)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", "-l", min=0, help="At most this many runs from this queue at once."
    ),
    description: str | None = typer.Option(None, "--description", "-d"),
    paused: bool = typer.Option(False, "--paused", help="Create the queue paused."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Create a work queue in a work pool."""
    queue = client().create_work_queue(
        pool,
        name,
        priority=priority,
        concurrency_limit=limit,
        description=description,
        paused=paused,
    )
    if output is out.Output.json:
        out.print_json(queue)
        return
    out.success(
        f"Created work queue '{queue.get('name', name)}' in work pool '{pool}' "
        f"(priority {queue.get('priority')})."
    )


@app.command("ls")
def ls(pool: str = POOL_OPTION, output: out.Output = out.OUTPUT_OPTION) -> None:
    """List the queues of a work pool, highest priority first."""
    queues = client().list_work_queues(pool)
    if output is out.Output.json:
        out.print_json(queues)
        return
    queues = sorted(queues, key=lambda q: (q.get("priority") or 0, str(q.get("name"))))
    out.table(queues, QUEUE_COLUMNS, title=f"Work queues of '{pool}'")


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Queue name."),
    pool: str = POOL_OPTION,
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show one work queue."""
    queue = client().read_work_queue(pool, name)
    if output is out.Output.json:
        out.print_json(queue)
        return
    out.details(
        queue,
        [
            "name",
            "id",
            "work_pool_name",
            "priority",
            "concurrency_limit",
            "paused",
            "description",
            "created",
        ],
        title=f"Work queue '{name}'",
    )


@app.command()
def update(
    name: str = typer.Argument(..., help="Queue name."),
    pool: str = POOL_OPTION,
    priority: int | None = typer.Option(None, "--priority", min=1),
    limit: int | None = typer.Option(None, "--limit", "-l", min=0),
    clear_limit: bool = typer.Option(False, "--clear-limit", help="Remove the concurrency limit."),
    description: str | None = typer.Option(None, "--description", "-d"),
) -> None:
    """Change a queue's priority, concurrency limit or description."""
    fields: dict[str, Any] = {}
    if priority is not None:
        fields["priority"] = priority
    if limit is not None and clear_limit:
        raise InvalidInput("give either --limit or --clear-limit, not both")
    if limit is not None:
        fields["concurrency_limit"] = limit
    if clear_limit:
        fields["concurrency_limit"] = None
    if description is not None:
        fields["description"] = description
    if not fields:
        raise InvalidInput(
            "nothing to update; give --priority, --limit, --clear-limit or --description"
        )
    client().update_work_queue(pool, name, **fields)
    out.success(f"Updated work queue '{name}' in work pool '{pool}'.")


@app.command()
def pause(name: str = typer.Argument(..., help="Queue name."), pool: str = POOL_OPTION) -> None:
    """Pause a work queue: its runs wait until it is resumed."""
    client().update_work_queue(pool, name, paused=True)
    out.success(f"Paused work queue '{name}' in work pool '{pool}'.")


@app.command()
def resume(name: str = typer.Argument(..., help="Queue name."), pool: str = POOL_OPTION) -> None:
    """Resume a paused work queue."""
    client().update_work_queue(pool, name, paused=False)
    out.success(f"Resumed work queue '{name}' in work pool '{pool}'.")


@app.command()
def delete(
    name: str = typer.Argument(..., help="Queue name."),
    pool: str = POOL_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a work queue (the `default` queue cannot be deleted)."""
    confirm(f"Delete work queue '{name}' of work pool '{pool}'?", yes)
    client().delete_work_queue(pool, name)
    out.success(f"Deleted work queue '{name}' from work pool '{pool}'.")
