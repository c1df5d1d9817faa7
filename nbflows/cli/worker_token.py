"""`nbflows worker-token ...`: credentials that let a worker serve some pools and nothing more."""

from __future__ import annotations

import typer

from nbflows.cli import output as out
from nbflows.cli.common import client

app = typer.Typer(
    help="Manage worker credentials: a worker started with one may only claim, heartbeat and "
    "report for its pools.",
    no_args_is_help=True,
)


@app.command()
def create(
    pool: list[str] = typer.Option(..., "--pool", "-p", help="A pool it serves. Repeatable."),
    name: str | None = typer.Option(
        None, "--name", "-n", help="A name to list and revoke it by (default: the pools)."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Create a worker credential; its token is printed once (the server keeps only a hash).

    Example: `nbflows worker-token create --pool gpu` then on the worker's machine
    `NBFLOWS_WORKER_TOKEN=... nbflows worker start --pool gpu`.
    """
    made = client().create_worker_token(name or "-".join(pool), pool)
    if output is out.Output.json:
        out.print_json(made)
        return
    out.success(f"worker credential '{made['name']}' for pools {', '.join(made['pools'])}")
    out.info("token (shown once; start the worker with NBFLOWS_WORKER_TOKEN or --worker-token):")
    out.echo(str(made["token"]))


@app.command("ls")
def ls(output: out.Output = out.OUTPUT_OPTION) -> None:
    """List live worker credentials (never their tokens)."""
    items = client().list_worker_tokens()
    if output is out.Output.json:
        out.print_json(items)
        return
    out.table(
        items,
        [
            ("Name", lambda x: x.get("name")),
            (
                "Pools",
                lambda x: ", ".join(
                    [*x.get("pools", []), *(f"every {k} pool" for k in x.get("pool_types", []))]
                ),
            ),
            ("Created", lambda x: out.fmt_time(x.get("created"))),
            ("ID", lambda x: x.get("id")),
        ],
        title="Worker credentials",
        empty="No worker credentials.",
    )


@app.command()
def revoke(name: str = typer.Argument(..., help="Name (or id) of the credential.")) -> None:
    """Revoke a worker credential: its worker is refused from now on."""
    client().revoke_worker_token(name)
    out.success(f"worker credential '{name}' revoked")
