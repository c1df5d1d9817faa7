"""`nbflows deploy PATH[:FLOW]`: deploy a whole notebook, or one `%%flow` cell of it."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Any

import typer
from rich.markup import escape

from nbflows.cli import output as out
from nbflows.cli.common import client, parse_json_object
from nbflows.client.deploy import deploy_request
from nbflows.errors import InvalidInput
from nbflows.notebooks.parameters import parse_key_values
from nbflows.pipelines.files import is_pipeline_file
from nbflows.presentation import change_text


class Catchup(str, Enum):
    all = "all"
    latest = "latest"
    skip = "skip"


def split_entrypoint(entrypoint: str) -> tuple[str, str | None]:
    """`path/to/nb.ipynb:flow_name` → (path, flow_name); a path alone → (path, None).

    Only a colon after `.ipynb` separates a flow name, so `C:\\nb.ipynb` and other colons inside
    paths are left alone.
    """
    head, sep, tail = entrypoint.rpartition(":")
    if sep and head.endswith(".ipynb") and tail and not any(c in tail for c in "/\\"):
        return head, tail
    return entrypoint, None


def absolute_path(path: str, cwd: str | None = None) -> str:
    """The notebook path made absolute from the current directory (the server resolves it);
    a URL (`s3://...`, `file://...`) is left as it is."""
    from nbflows.notebooks.remote import is_url

    if is_url(path):
        return path
    expanded = os.path.expanduser(path)
    return os.path.normpath(os.path.join(cwd or os.getcwd(), expanded))


def build_schedules(
    cron: list[str] | None,
    interval: list[float] | None,
    rrule: list[str] | None,
    timezone: str | None,
) -> list[dict[str, Any]] | None:
    """The `schedules` of the deploy body, or None when no schedule option was given."""
    given = [
        name
        for name, values in (("--cron", cron), ("--interval", interval), ("--rrule", rrule))
        if values
    ]
    if len(given) > 1:
        raise InvalidInput(
            f"give one kind of schedule, not {' and '.join(given)} (each may be repeated)"
        )
    if not given:
        if timezone:
            raise InvalidInput("--timezone needs a schedule: --cron, --interval or --rrule")
        return None
    tz = {"timezone": timezone} if timezone else {}
    schedules: list[dict[str, Any]] = []
    for expr in cron or []:
        schedules.append({"kind": "cron", "cron": expr, **tz})
    for seconds in interval or []:
        if seconds <= 0:
            raise InvalidInput(f"--interval must be a positive number of seconds, got {seconds}")
        value: float | int = int(seconds) if float(seconds).is_integer() else seconds
        schedules.append({"kind": "interval", "interval": value, **tz})
    for rule in rrule or []:
        schedules.append({"kind": "rrule", "rrule": rule, **tz})
    return schedules


def build_image(
    image: str | None, dockerfile: str | None, base_image: str | None, push: bool | None
) -> dict[str, Any] | None:
    if image is None:
        extras = [
            flag
            for flag, value in (
                ("--dockerfile", dockerfile),
                ("--base-image", base_image),
                ("--push/--no-push", push),
            )
            if value is not None
        ]
        if extras:
            raise InvalidInput(f"{', '.join(extras)} only apply with --image NAME[:TAG]")
        return None
    from nbflows.packaging.images import split_image_reference

    name, tag = split_image_reference(image)
    spec: dict[str, Any] = {"name": name}
    if tag:
        spec["tag"] = tag
    if dockerfile is not None:
        # "auto" generates one; a path is made absolute like the notebook.
        spec["dockerfile"] = dockerfile if dockerfile == "auto" else absolute_path(dockerfile)
    if base_image is not None:
        spec["base_image"] = base_image
    if push is not None:
        spec["push"] = push
    return spec


def deploy(
    entrypoint: str = typer.Argument(
        ...,
        metavar="PATH[:FLOW]",
        help="The notebook; with :FLOW, only that %%flow cell (and the cells it needs); or a "
        "pipeline file (.yaml, .yml, .toml).",
    ),
    name: str = typer.Option(..., "--name", "-n", help="Deployment name."),
    pool: str | None = typer.Option(
        None, "--pool", "-p", help="Work pool to run in (a pipeline file names one per step)."
    ),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Work queue (default: default)."),
    param: list[str] | None = typer.Option(
        None, "--param", help="Default parameter KEY=VALUE (VALUE is JSON if it parses). Repeat."
    ),
    params: str | None = typer.Option(
        None, "--params", help="Default parameters as one JSON object."
    ),
    job_variable: list[str] | None = typer.Option(
        None,
        "--job-variable",
        "-jv",
        help="Job variable KEY=VALUE for the pool's template. Repeat.",
    ),
    cron: list[str] | None = typer.Option(None, "--cron", help="Cron schedule. Repeatable."),
    interval: list[float] | None = typer.Option(
        None, "--interval", help="Run every SECONDS. Repeatable."
    ),
    rrule: list[str] | None = typer.Option(None, "--rrule", help="RRule schedule. Repeatable."),
    timezone: str | None = typer.Option(
        None, "--timezone", help="Time zone of the schedules, e.g. Europe/Paris (default UTC)."
    ),
    tag: list[str] | None = typer.Option(None, "--tag", "-t", help="Tag. Repeatable."),
    description: str | None = typer.Option(None, "--description", "-d"),
    version: str | None = typer.Option(None, "--version", help="A version label of your own."),
    retries: int | None = typer.Option(None, "--retries", min=0, help="Retries of a failed run."),
    retry_delay: float | None = typer.Option(
        None, "--retry-delay", min=0, help="Seconds between retries."
    ),
    catchup: Catchup | None = typer.Option(
        None, "--catchup", help="Late scheduled runs: run all, only the latest, or skip them."
    ),
    export: list[str] | None = typer.Option(
        None, "--export", help="Also export each run's notebook: html (or pdf). Repeatable."
    ),
    retention_days: float | None = typer.Option(
        None, "--retention-days", min=0, help="Remove this deployment's runs after N days."
    ),
    keep_last: int | None = typer.Option(
        None, "--keep-last", min=0, help="Retention keeps at least this deployment's last N runs."
    ),
    paused: bool = typer.Option(False, "--paused", help="Deploy with schedules paused."),
    no_schedule: bool = typer.Option(
        False,
        "--no-schedule",
        help="Remove the deployment's schedules (deploying again keeps them otherwise).",
    ),
    move_pool: bool = typer.Option(
        False,
        "--move-pool",
        help="Move an existing deployment to --pool (refused otherwise: it keeps its pool).",
    ),
    kernel: str | None = typer.Option(
        None,
        "--kernel",
        "-k",
        help="Kernel to run the notebook in (default: the notebook's own), e.g. python3.",
    ),
    image: str | None = typer.Option(
        None, "--image", help="Build an image NAME[:TAG] for docker pools."
    ),
    dockerfile: str | None = typer.Option(
        None, "--dockerfile", help="Dockerfile to build with, or 'auto' to generate one."
    ),
    base_image: str | None = typer.Option(None, "--base-image", help="Base image to build on."),
    push: bool | None = typer.Option(
        None, "--push/--no-push", help="Push the built image to its registry."
    ),
    output: out.Output = out.OUTPUT_OPTION,
) -> None:
    """Deploy a notebook (or one of its %%flow cells) to a work pool.

    Deploying again makes a new version and keeps what is not given (schedules, parameters, job
    variables, queue, tags, description, retries...); the output says what changed.

    Example: nbflows deploy notebooks/repo_info.ipynb:get_repo_info --name my-first-deployment
    --pool my-pool

    A pipeline file deploys a pipeline: nbflows deploy pipeline.yaml --name nightly
    """
    path, flow_name = split_entrypoint(entrypoint)
    schedules = build_schedules(cron, interval, rrule, timezone)
    if flow_name is None and is_pipeline_file(path):
        deploy_pipeline_file(
            path,
            name,
            parameters={
                **parse_json_object(params, "--params"),
                **parse_key_values(param, "--param"),
            },
            schedules=[] if no_schedule else schedules or [],
            paused=paused,
            tags=list(tag or []),
            description=description,
            output=output,
        )
        return
    if pool is None:
        raise InvalidInput("--pool is required: the work pool the notebook runs in")
    if no_schedule:
        if schedules:
            raise InvalidInput(
                "--no-schedule removes the schedules: give no --cron, --interval or --rrule with it"
            )
        schedules = []
    parameters = {**parse_json_object(params, "--params"), **parse_key_values(param, "--param")}
    body = deploy_request(
        path=absolute_path(path),
        flow_name=flow_name,
        name=name,
        work_pool_name=pool,
        work_queue_name=queue,
        parameters=parameters or None,
        job_variables=parse_key_values(job_variable, "--job-variable") or None,
        schedules=schedules,
        tags=list(tag) if tag else None,
        description=description,
        version=version,
        retries=retries,
        retry_delay=retry_delay,
        catchup=catchup.value if catchup else None,
        kernel_name=kernel,
        paused=True if paused else None,
        move_pool=move_pool,
        exports=list(export) if export else None,
        retention_days=retention_days or None,
        retention_keep_last=keep_last or None,
    )
    image_spec = build_image(image, dockerfile, base_image, push)
    if image_spec is not None:
        # Built here, where the notebook and the Docker engine are, before the deploy request:
        # a failed build leaves no deployment behind.
        body["image"] = package_image(
            image_spec, path, flow_name, pool, body.get("job_variables"), output
        )
    deployment = client().deploy(**body)
    if output is out.Output.json:
        out.print_json(deployment)
        return
    full_name = deployment.get("full_name") or f"{deployment.get('flow_name')}/{name}"
    verb = "created" if deployment.get("version") in (1, None) else "updated"
    out.success(
        f"Deployment '{escape(str(full_name))}' successfully {verb} "
        f"(version {deployment.get('version')}) with id '{deployment.get('id')}'."
    )
    changes = deployment.get("changes") or []
    if changes:
        out.info(f"Changed since version {deployment.get('version', 1) - 1}:")
        for change in changes:
            out.info("  " + escape(change_text(change)))
    elif verb == "updated":
        out.info(f"Nothing changed since version {deployment.get('version', 1) - 1}.")
    image_ref = (deployment.get("image") or {}).get("reference")
    if image_ref:
        out.info(f"Image: {escape(str(image_ref))}")
    schedules = deployment.get("schedules") or []
    if schedules:
        state = " (paused)" if deployment.get("paused") else ""
        out.info("Schedules: " + escape("; ".join(out.schedule_text(s) for s in schedules)) + state)
    out.info(
        f"\nTo execute flow runs from this deployment, a worker must serve the "
        f"'{escape(str(deployment.get('work_pool_name', pool)))}' work pool"
        + (
            " (the nbflows server's embedded worker serves process pools)."
            if _pool_type(pool) == "process"
            else ":\n\n        [blue]$ nbflows worker start --pool "
            f"'{escape(str(deployment.get('work_pool_name', pool)))}'[/]"
        )
    )
    out.info(
        "\nTo schedule a run for this deployment, use the following command:\n\n"
        f"        [blue]$ nbflows deployment run '{escape(str(full_name))}'[/]\n"
    )


def deploy_pipeline_file(
    path: str,
    name: str,
    *,
    parameters: dict[str, Any],
    schedules: list[dict[str, Any]],
    paused: bool,
    tags: list[str],
    description: str | None,
    output: out.Output,
) -> None:
    """`nbflows deploy PIPELINE.yaml --name NAME`: the pipeline and a deployment per step."""
    from nbflows.pipelines.files import load_pipeline_file

    file = absolute_path(path)
    pipeline = load_pipeline_file(file)
    deployment = client().deploy_pipeline(
        name=name,
        pipeline=pipeline,
        parameters=parameters,
        schedules=schedules,
        paused=paused,
        tags=tags,
        description=description,
        base_dir=os.path.dirname(file),
    )
    if output is out.Output.json:
        out.print_json(deployment)
        return
    full_name = deployment.get("full_name")
    verb = "created" if deployment.get("version") == 1 else "updated"
    out.success(
        f"Pipeline '{escape(str(full_name))}' successfully {verb} (version "
        f"{deployment.get('version')}) with {len(pipeline.get('steps') or [])} steps."
    )
    found = deployment.get("schedules") or []
    if found:
        out.info("Schedules: " + escape("; ".join(out.schedule_text(s) for s in found)))
    out.info(
        "\nTo run it now:\n\n"
        f"        [blue]$ nbflows deployment run '{escape(str(full_name))}' --watch[/]\n"
    )


def package_image(
    spec: dict[str, Any],
    path: str,
    flow_name: str | None,
    pool: str,
    job_variables: dict[str, Any] | None,
    output: out.Output,
) -> dict[str, Any]:
    """Build (and push with --push) the image `spec` of `build_image` describes; returns the
    deploy request's `image`. Build lines are printed as they come (on stderr with --output
    json, so that stdout stays one JSON document)."""
    from nbflows.packaging.build import build_for_deploy
    from nbflows.packaging.images import DeploymentImage

    push = bool(spec.pop("push", False))
    image = DeploymentImage(**spec)
    target = client().read_work_pool(pool)
    stream = sys.stderr if output is out.Output.json else sys.stdout

    def show(line: str) -> None:
        stream.write(out.clean(line) + "\n")
        stream.flush()

    return build_for_deploy(
        absolute_path(path),
        flow_name,
        image,
        target,
        build=True,
        push=push,
        progress=show,
        job_variables=job_variables,
    )


def _pool_type(pool: str) -> str | None:
    try:
        return str(client().read_work_pool(pool).get("type"))
    except Exception:  # only decides the wording of a hint
        return None
