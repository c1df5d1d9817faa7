"""The `nbflows` command: the root, its global options, and the command groups.

Every command talks to the server through `nbflows.client.rest`; any `NBFlowsError` ends the command
with one red line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from nbflows import __version__
from nbflows.cli import (
    automation,
    common,
    deployment,
    flow_run,
    run_outputs,  # noqa: F401  (adds its commands to `flow-run`)
    secret,
    work_pool,
    work_queue,
    worker_token,
)
from nbflows.cli import output as out
from nbflows.cli.deploy import deploy
from nbflows.errors import NBFlowsError
from nbflows.protocol import API_TOKEN_ENV, API_URL_ENV


class NBFlowsGroup(TyperGroup):
    """The root group: turns domain errors into a one-line message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NBFlowsError as exc:
            out.error(exc.message)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="nbflows",
    cls=NBFlowsGroup,
    help="nbflows: notebook-native orchestration for Jupyter "
    "(work pools, deployments, flow runs, workers).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include the API token
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.info(f"nbflows {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    # The environment variables are read by `get_client` itself (not by typer), so that a token
    # meant for NBFLOWS_API_URL is never sent to a server found by discovery.
    url: str | None = typer.Option(
        None,
        "--url",
        help=f"API root, e.g. http://127.0.0.1:8888/nbflows/api/ (env {API_URL_ENV}; default: the "
        "running Jupyter server).",
    ),
    token: str | None = typer.Option(
        None, "--token", help=f"The server's token (env {API_TOKEN_ENV})."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """nbflows: notebook-native orchestration for Jupyter."""
    common.configure(url, token)
    ctx.call_on_close(common.close)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def server(
    ctx: typer.Context,
    port: int | None = typer.Option(None, "--port", help="Port (default 8888, or the next free)."),
    ip: str | None = typer.Option(None, "--ip", help="Interface to listen on (default localhost)."),
    root_dir: str | None = typer.Option(
        None, "--root-dir", help="Directory of the notebooks (default: the current directory)."
    ),
    token: str | None = typer.Option(
        None, "--token", help="Token clients must send (default: a generated one)."
    ),
) -> None:
    """Run a headless Jupyter server with the nbflows API, scheduler, worker and dashboard.

    Other Jupyter server options (--ServerApp.x=y) are passed through.
    """
    from nbflows.extension.server import main as server_main

    argv: list[str] = []
    for flag, value in (
        ("--port", port),
        ("--ip", ip),
        ("--root-dir", root_dir),
        ("--token", token),
    ):
        if value is not None:
            argv += [flag, str(value)]
    server_main([*argv, *ctx.args])


app.command("deploy")(deploy)
app.add_typer(work_pool.app, name="work-pool")
app.add_typer(work_queue.app, name="work-queue")
app.add_typer(deployment.app, name="deployment")
app.add_typer(flow_run.app, name="flow-run")
app.add_typer(automation.app, name="automation")
app.add_typer(secret.app, name="secret")
app.add_typer(worker_token.app, name="worker-token")


def _add_worker_group() -> None:
    """`nbflows worker ...` comes from `nbflows.cli.worker` when it is there and imports."""
    try:
        from nbflows.cli.worker import app as worker_app
    except Exception as exc:  # the rest of the CLI must work without the worker commands
        problem = (
            "the worker commands are not installed"
            if isinstance(exc, ModuleNotFoundError) and exc.name == "nbflows.cli.worker"
            else f"the worker commands failed to load ({type(exc).__name__}: {exc})"
        )

        @app.command(
            "worker",
            help=f"Run a worker (unavailable: {problem}).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )
        def worker_unavailable() -> None:
            raise NBFlowsError(problem)

        return
    app.add_typer(worker_app, name="worker")


_add_worker_group()


def main(argv: list[str] | None = None) -> None:
    """The `nbflows` console script."""
    try:
        app(args=argv, prog_name="nbflows")
    except NBFlowsError as exc:  # raised outside a command (e.g. while parsing)
        out.error(exc.message)
        sys.exit(1)


if __name__ == "__main__":
    main()
