"""`nbflows flow-run ...`: list, inspect, follow logs of, cancel and repair flow runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text

from nbflows.cli import output as out
from nbflows.cli.common import client
from nbflows.client.rest import Client
from nbflows.protocol import TERMINAL_VALUES

PAGE = 1000

app = typer.Typer(help="Inspect and control flow runs.", no_args_is_help=True)

RUN_FIELDS = [
    "id",
    "name",
    "flow_name",
    "kind",
    "deployment_name",
    "deployment_version",
    "work_pool_name",
    "work_queue_name",
    "state",
    "parameters",
    "job_variables",
    "tags",
    "attempt",
    "max_retries",
    "retry_delay",
    "expected_start_time",
    "start_time",
    "end_time",
    "duration",
    "worker_name",
    "parent_run_id",
    "idempotency_key",
    "log_count",
    "logs_truncated",
    "has_notebook",
    "outputs",
    "created",
    "updated",
]


def run_label(run: dict[str, Any]) -> str:
    return out.clean(f"flow run '{run.get('name') or run.get('id')}'")


def state_line(run: dict[str, Any]) -> None:
    state = run.get("state") or {}
    stamp = out.fmt_time(state.get("timestamp"))[11:]
    text = out.text(f"{stamp} | {'STATE':<7} | " if stamp else f"{'STATE':<7} | ", style="dim")
    text += Text(f"{run_label(run).capitalize()} is ") + out.state_text(state)
    if state.get("message"):
        text += out.text(f": {state['message']}")
    out.console.print(text, highlight=False, soft_wrap=True)


def follow(api: Client, run_id: str, timeout: float | None, *, states: bool) -> dict[str, Any]:
    """Print log lines (and state changes when `states`) as they arrive; return the last run.

    Ctrl-C stops watching (exit code 130); the run itself goes on.
    """
    try:
        return api.watch_flow_run(
            run_id,
            on_log=out.log_line,
            on_state=state_line if states else None,
            timeout=timeout,
        )
    except KeyboardInterrupt:
        out.err_console.print(
            f"\nStopped watching. The run goes on; cancel it with: "
            f"nbflows flow-run cancel {escape(run_id)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def finish(run: dict[str, Any], timeout: float | None) -> None:
    """Say how a watched run ended; exit 0 only when it COMPLETED."""
    state = run.get("state") or {}
    kind = state.get("type")
    if kind not in TERMINAL_VALUES:
        out.err_console.print(
            Text(f"Stopped watching after {timeout:g}s; {run_label(run)} is ")
            + out.state_text(state)
            + Text("."),
            soft_wrap=True,
        )
        raise typer.Exit(1)
    text = Text(f"{run_label(run).capitalize()} finished in state ") + out.state_text(state)
    if run.get("duration") is not None:
        text += Text(f" after {out.fmt_duration(run.get('duration'))}")
    if state.get("message"):
        text += out.text(f": {state['message']}")
    out.console.print(text, highlight=False, soft_wrap=True)
    if kind != "COMPLETED":
        raise typer.Exit(1)


def _deployment_filter(api: Client, deployment: str | None) -> str | None:
    if deployment is None or "/" not in deployment:
        return deployment
    return str(api.read_deployment(deployment)["id"])


RUN_COLUMNS: list[out.Column] = [
    ("ID", lambda r: r.get("id")),
    ("Name", lambda r: r.get("name")),
    ("Deployment / flow", lambda r: r.get("deployment_name") or r.get("flow_name")),
    ("State", lambda r: out.state_text(r.get("state"))),
    ("Start", lambda r: out.fmt_time_short(r.get("start_time") or r.get("expected_start_time"))),
    ("Duration", lambda r: out.fmt_duration(r.get("duration"))),
]


@app.command("ls")
def ls(
    state: list[str] | None = typer.Option(
        None, "--state", "-s", help="Only runs in this state type (e.g. RUNNING). Repeatable."
    ),
    deployment: str | None = typer.Option(
        None, "--deployment", "-d", help="Only runs of this deployment ('flow/name' or id)."
    ),
    flow: str | None = typer.Option(None, "--flow", "-f", help="Only runs of this flow."),
    pool: str | None = typer.Option(None, "--pool", "-p", help="Only runs in this work pool."),
    limit: int = typer.Option(15, "--limit", "-l", min=1, help="How many runs (newest first)."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """List flow runs, newest first."""
    api = client()
    states = [s.strip().upper() for item in state or [] for s in item.split(",") if s.strip()]
    runs = api.list_flow_runs(
        state=states or None,
        deployment_id=_deployment_filter(api, deployment),
        flow_name=flow,
        work_pool_name=pool,
        limit=limit,
    )
    if output is out.Output.json:
        out.print_json(runs)
        return
    out.table(runs, RUN_COLUMNS, title="Flow Runs", empty="No flow runs match.")


@app.command()
def inspect(
    id: str = typer.Argument(..., help="Flow run id."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show one flow run."""
    run = client().read_flow_run(id)
    if output is out.Output.json:
        out.print_json(run)
        return
    out.details(run, RUN_FIELDS, title=run_label(run).capitalize())


@app.command()
def logs(
    id: str = typer.Argument(..., help="Flow run id."),
    follow_: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new lines until the run ends."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Print a flow run's log lines; with --follow, stream them until the run ends."""
    api = client()
    if follow_:
        if output is out.Output.json:
            # One JSON object per line, so a script can read lines as they arrive.
            api.watch_flow_run(id, on_log=lambda line: print(json.dumps(line), flush=True))
            return
        follow(api, id, None, states=False)
        return
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.read_logs(id, after=after, limit=PAGE)
        items = page.get("items") or []
        lines.extend(items)
        after = int(page.get("next_after", after))
        if output is not out.Output.json:
            for line in items:
                out.log_line(line)
        if len(items) < PAGE:
            break
    if output is out.Output.json:
        out.print_json(lines)
    elif not lines:
        out.info("[dim]No log lines yet.[/]")


@app.command()
def cancel(id: str = typer.Argument(..., help="Flow run id.")) -> None:
    """Cancel a flow run: a scheduled run is cancelled at once, a running one is stopped."""
    run = client().cancel_flow_run(id)
    state = (run.get("state") or {}).get("type")
    label = escape(run_label(run).capitalize())
    if state == "CANCELLED":
        out.success(f"{label} was cancelled.")
    else:
        out.success(f"{label} was successfully scheduled for cancellation with status: {state}")


STEP_COLUMNS: list[out.Column] = [
    ("Step", lambda r: r.get("label")),
    (
        "State",
        lambda r: out.state_text({"type": r.get("state"), "name": r.get("state", "").capitalize()}),
    ),
    ("Run", lambda r: r.get("flow_run_id") or ""),
    ("Repair", lambda r: r.get("repair")),
    ("Outputs", lambda r: out.fmt_value(r.get("outputs") or {})),
    ("Message", lambda r: r.get("message") or ""),
]


def print_steps(graph: dict[str, Any], *, with_state: bool = True) -> None:
    """The state of a pipeline run and a table of its steps."""
    run = graph["flow_run"]
    if with_state:
        state_line(run)
    out.table(graph["step_runs"], STEP_COLUMNS, title=f"Steps of {run_label(run)}", empty="")


@app.command()
def steps(
    id: str = typer.Argument(..., help="Pipeline run id."),
    svg: Path | None = typer.Option(
        None, "--svg", help="Also save the DAG, coloured by step state, as an SVG picture here."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Show the steps of a pipeline run: their states, runs and outputs."""
    graph = client().read_pipeline_run(id)
    if svg is not None:
        from nbflows.pipelines.picture import render_svg

        svg.write_text(render_svg(graph), encoding="utf-8")
    if output is out.Output.json:
        out.print_json(graph)
        return
    print_steps(graph)
    if svg is not None:
        out.info(f"Saved the DAG picture to {escape(str(svg))}.")


@app.command()
def repair(
    id: str = typer.Argument(..., help="Pipeline run id."),
    watch: bool = typer.Option(False, "--watch", help="Wait for the repaired run to end."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Re-run a failed pipeline run from its failed steps and everything downstream of them,
    reusing the steps that succeeded (and their outputs)."""
    api = client()
    run = api.repair_flow_run(id)
    if output is out.Output.json and not watch:
        out.print_json(run)
        return
    if output is not out.Output.json:
        state_line(run)
    if not watch:
        out.info(f"\nFollow it with: [blue]nbflows flow-run steps {escape(id)}[/]")
        return
    run = follow(api, id, None, states=output is not out.Output.json)
    if output is out.Output.json:
        out.print_json(run)
    else:
        print_steps(api.read_pipeline_run(id), with_state=False)
    finish(run, None)
