"""`nbflows secret ...`: named values encrypted at rest, used as `{{ secret.NAME }}`."""

from __future__ import annotations

import sys

import typer

from nbflows.cli import output as out
from nbflows.cli.common import client
from nbflows.errors import InvalidInput

app = typer.Typer(
    help="Manage secrets: values kept encrypted by the server, referenced from job variables "
    "and parameters as {{ secret.NAME }}, resolved only on the worker at run time.",
    no_args_is_help=True,
)


@app.command("set")
def set_(name: str = typer.Argument(..., help="Secret name (letters, digits, '_').")) -> None:
    """Set a secret; its value comes from a hidden prompt, or from stdin when piped.

    Example: `nbflows secret set STRIPE_KEY`, or `printf %s "$KEY" | nbflows secret set STRIPE_KEY`.
    """
    if sys.stdin.isatty():
        value = typer.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    if not value:
        raise InvalidInput(f"no value given for secret '{name}'")
    client().set_secret(name, value)
    out.success(f"secret '{name}' set; use it as {{{{ secret.{name} }}}}")


@app.command("ls")
def ls(output: out.Output = out.OUTPUT_OPTION) -> None:
    """List secret names (values are never shown)."""
    items = client().list_secrets()
    if output is out.Output.json:
        out.print_json(items)
        return
    out.table(
        items,
        [
            ("Name", lambda x: x.get("name")),
            ("Created", lambda x: out.fmt_time(x.get("created"))),
            ("Updated", lambda x: out.fmt_time(x.get("updated"))),
        ],
        title="Secrets",
        empty="No secrets.",
    )


@app.command()
def delete(name: str = typer.Argument(..., help="Secret name.")) -> None:
    """Delete a secret (runs that refer to it then fail to start)."""
    client().delete_secret(name)
    out.success(f"secret '{name}' deleted")
