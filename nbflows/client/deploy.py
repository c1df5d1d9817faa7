"""`nbflows.deploy(...)`: deploy a notebook, or one `%%flow` cell of it, from any Python code."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

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
    from nbflows.scheduling.schedules import make_schedule, parse_schedule, schedule_to_dict

    client = client or get_client()
    path = Path(notebook).resolve()
    body: dict[str, Any] = {
        "path": str(path),
        "flow_name": flow_name,
        "name": name,
        "work_pool_name": work_pool_name,
        "work_queue_name": work_queue_name,
        "parameters": None if parameters is None else dict(parameters),
        "job_variables": None if job_variables is None else dict(job_variables),
        "paused": paused,
        "tags": None if tags is None else list(tags),
        "description": description,
        "retries": retries,
        "retry_delay": retry_delay,
        "move_pool": move_pool or None,
        "kernel_name": kernel,
    }
    chosen = [schedule_to_dict(parse_schedule(s)) for s in schedules or []]
    if cron is not None or interval is not None or rrule is not None:
        schedule = make_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone)
        chosen.append(schedule_to_dict(schedule))
    if chosen or schedules is not None:
        body["schedules"] = chosen
    if image is not None:
        from nbflows.packaging.build import build_for_deploy

        if not isinstance(image, DeploymentImage):
            image = DeploymentImage(name=image)
        body["image"] = build_for_deploy(
            path,
            flow_name,
            image,
            client.read_work_pool(work_pool_name),
            build=build,
            push=push,
            progress=print,
            job_variables=job_variables,
        )
    return dict(client.deploy(**{k: v for k, v in body.items() if v is not None}))
