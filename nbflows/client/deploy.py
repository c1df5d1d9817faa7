"""`nbflows.deploy(...)`: deploy a notebook, or one `%%flow` cell of it, from any Python code; and
the one deploy request (`deploy_request`, `image_for_deploy`) every face sends."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from nbflows.errors import InvalidInput
from nbflows.packaging.images import DeploymentImage


def deploy(
    notebook: str | Path,
    name: str,
    work_pool_name: str,
    *,
    flow_name: str | None = None,
    work_queue_name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    job_variables: Mapping[str, Any] | None = None,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    schedules: list[Any] | None = None,
    paused: bool | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    image: DeploymentImage | str | None = None,
    build: bool = True,
    push: bool = False,
    move_pool: bool = False,
    kernel: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Deploy `notebook` (whole, or its `%%flow flow_name` cell) to a work pool; return the deployment.

    The same request as `nbflows deploy PATH[:FLOW] ...`: the server freezes the notebook as a new
    version; with `image`, the image is built here first (nothing is deployed if the build fails).
    Deploying again keeps what is not given (`schedules=[]` removes the schedules); the answer's
    `changes` say what changed. An existing deployment moves to another pool only with
    `move_pool=True`.
    `kernel` names the kernel to run it in (papermill's `-k`; default: the notebook's own).
    """
    from nbflows.client.rest import get_client

    client = client or get_client()
    path = Path(notebook).resolve()
    body = deploy_request(
        path=str(path),
        flow_name=flow_name,
        name=name,
        work_pool_name=work_pool_name,
        work_queue_name=work_queue_name,
        parameters=parameters,
        job_variables=job_variables,
        cron=cron,
        interval=interval,
        rrule=rrule,
        timezone=timezone,
        schedules=schedules,
        paused=paused,
        tags=tags,
        description=description,
        retries=retries,
        retry_delay=retry_delay,
        move_pool=move_pool,
        kernel_name=kernel,
    )
    if image is not None:
        body["image"] = image_for_deploy(
            client, path, flow_name, image, work_pool_name, job_variables, build=build, push=push
        )
    return dict(client.deploy(**body))


def deploy_request(
    *,
    path: str | None,
    name: str,
    work_pool_name: str,
    flow_name: str | None = None,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    schedules: list[Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    job_variables: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
    move_pool: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """The one deploy request body (docs/api.md) of every face: the CLI, `nbflows.deploy`,
    `Flow.deploy`/`%deploy` and the deploy form. What is None is left out, so deploying again
    keeps it. `schedules` (Schedule objects or dicts) and one schedule made of `cron`,
    `interval` or `rrule` in `timezone` together replace the deployment's schedules; with
    none of them the schedules are kept, `schedules=[]` removes them. Other `fields` (queue,
    paused, description, version, retries, retry_delay, catchup, kernel_name, notebook...) go
    as they are.
    """
    from nbflows.scheduling.schedules import make_schedule, parse_schedule, schedule_to_dict

    chosen = [schedule_to_dict(parse_schedule(s)) for s in schedules or []]
    if cron is not None or interval is not None or rrule is not None:
        schedule = make_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone)
        chosen.append(schedule_to_dict(schedule))
    elif timezone is not None:
        raise InvalidInput("timezone applies to a schedule: give cron=, interval= or rrule= too")
    body: dict[str, Any] = {
        "path": path,
        "flow_name": flow_name,
        "name": name,
        "work_pool_name": work_pool_name,
        "parameters": None if parameters is None else dict(parameters),
        "job_variables": None if job_variables is None else dict(job_variables),
        "schedules": chosen if chosen or schedules is not None else None,
        "tags": None if tags is None else list(tags),
        "move_pool": move_pool or None,
        **fields,
    }
    return {k: v for k, v in body.items() if v is not None}


def image_for_deploy(
    client: Any,
    path: str | Path,
    flow_name: str | None,
    image: DeploymentImage | str,
    work_pool_name: str,
    job_variables: Mapping[str, Any] | None,
    *,
    build: bool = True,
    push: bool = False,
    progress: Any = print,
) -> dict[str, Any]:
    """Build (and push) the deployment's image here, before the request: a failed build deploys
    nothing. Returns the request's `image`."""
    from nbflows.packaging.build import build_for_deploy
    from nbflows.packaging.images import DeploymentImage

    if not isinstance(image, DeploymentImage):
        image = DeploymentImage(name=str(image))
    return dict(
        build_for_deploy(
            path,
            flow_name,
            image,
            client.read_work_pool(work_pool_name),
            build=build,
            push=push,
            progress=progress,
            job_variables=job_variables,
        )
    )
