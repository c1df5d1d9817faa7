"""`nbflows flow-run artifacts|artifact|notebook|prune`: what runs keep, and removing it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from rich.markup import escape

from nbflows.cli import output as out
from nbflows.cli.common import client
from nbflows.cli.flow_run import app
from nbflows.errors import InvalidInput
from nbflows.services.limits import size_text

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm]?)\s*$")
_DAYS_PER = {"d": 1.0, "": 1.0, "h": 1 / 24, "m": 1 / 1440}


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m` or a number of days, as days."""
    match = _AGE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(
            f"--older-than {text!r} is not an age: give a positive number with d (days), "
            "h (hours) or m (minutes), e.g. 30d"
        )
    return float(match.group(1)) * _DAYS_PER[match.group(2)]


@app.command()
def artifacts(
    id: str = typer.Argument(..., help="Flow run id."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """List the artifacts of a flow run (files it wrote under $NBFLOWS_OUTPUT_DIR)."""
    files = client().list_flow_run_artifacts(id)
    if output is out.Output.json:
        out.print_json(files)
        return
    out.table(
        files,
        [
            ("Name", lambda f: f.get("name")),
            ("Size", lambda f: size_text(int(f.get("size") or 0))),
            ("SHA-256", lambda f: str(f.get("sha256") or "")[:16]),
            ("Stored", lambda f: out.fmt_time_short(f.get("created"))),
        ],
        title=f"Artifacts of flow run {id}",
        empty=f"Flow run '{id}' has no artifacts.",
        keep=("Name",),
    )


@app.command()
def artifact(
    id: str = typer.Argument(..., help="Flow run id."),
    name: str = typer.Argument(..., help="Artifact name (as `artifacts` lists it)."),
    file: Path | None = typer.Option(
        None, "--out", "-o", help="Save it here (default: its own file name, here)."
    ),
) -> None:
    """Download an artifact of a flow run."""
    data = client().read_flow_run_artifact(id, name)
    target = file or Path(name.rsplit("/", 1)[-1])
    target.write_bytes(data)
    out.success(f"Saved artifact '{escape(name)}' ({size_text(len(data))}) to {target}.")


@app.command()
def notebook(
    id: str = typer.Argument(..., help="Flow run id."),
    to: str = typer.Option(
        "ipynb", "--to", "-t", help="ipynb, html, or pdf (where the server has Chromium)."
    ),
    file: Path | None = typer.Option(
        None, "--out", "-o", "--file", "-f", help="Save it to this file instead of showing it."
    ),
    output: out.Output = typer.Option(
        out.Output.table, "--output", help="table for people, json for scripts."
    ),
) -> None:
    """Show (or save) the executed notebook of a flow run, with its outputs; --to html|pdf
    exports it."""
    api = client()
    if to != "ipynb":
        data = api.export_flow_run_notebook(id, to)
        target = file or Path(f"{id}.{to}")
        target.write_bytes(data)
        out.success(f"Saved flow run '{escape(id)}' as {to} ({size_text(len(data))}) to {target}.")
        return
    nb = api.read_flow_run_notebook(id)
    if file is not None:
        file.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
        out.success(f"Saved the executed notebook of flow run '{escape(id)}' to {file}.")
        return
    if output is out.Output.json:
        out.print_json(nb)
        return
    out.notebook(nb, outputs=True)


@app.command()
def prune(
    older_than: str | None = typer.Option(
        None, "--older-than", help="Remove finished runs older than this (30d, 12h, 90m)."
    ),
    keep_last: int | None = typer.Option(
        None, "--keep-last", min=1, help="Keep the newest N runs per deployment (or flow)."
    ),
    deployment: str | None = typer.Option(
        None, "--deployment", "-d", help="Only runs of this deployment ('flow/name' or id)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove nothing."),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Remove finished runs with their logs, notebooks and artifacts, wherever stored."""
    if older_than is None and keep_last is None:
        raise InvalidInput("say what to remove: --older-than AGE and/or --keep-last N")
    answer = client().prune_flow_runs(
        older_than_days=parse_age(older_than) if older_than else None,
        keep_last=keep_last,
        deployment=deployment,
        dry_run=dry_run,
    )
    if output is out.Output.json:
        out.print_json(answer)
        return
    verb = "Would remove" if dry_run else "Removed"

    def runs(count: int) -> str:
        return f"{count} run" if count == 1 else f"{count} runs"

    out.table(
        answer["runs"],
        [
            ("ID", lambda r: r.get("id")),
            ("Name", lambda r: r.get("name")),
            ("Flow", lambda r: r.get("flow_name")),
            ("State", lambda r: r.get("state")),
            ("Created", lambda r: out.fmt_time_short(r.get("created"))),
            ("Size", lambda r: size_text(int(r.get("bytes") or 0))),
        ],
        title=f"{verb} {runs(answer['removed'])}",
        empty="No run matches: nothing to remove.",
    )
    before, after = answer["before"], answer["after"]
    out.info(
        f"{verb} {runs(answer['removed'])}, {size_text(answer['removed_bytes'])}. "
        f"Stored before: {runs(before['runs'])}, {size_text(before['bytes'])}; "
        f"{'would be ' if dry_run else ''}after: {runs(after['runs'])}, "
        f"{size_text(after['bytes'])}."
    )
