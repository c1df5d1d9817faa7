"""Deploying a flow from the kernel (`Flow.deploy`, `%deploy`): its schedules and image (built
where the kernel is, with progress shown), the server's client, and the summary shown after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflows.client.context import KernelContext
from nbflows.errors import InvalidInput

if TYPE_CHECKING:
    from nbflows.client.rest import Client
    from nbflows.packaging.images import DeploymentImage
    from nbflows.scheduling.schedules import Schedule


# --------------------------------------------------------------------------------------------
# Deploying


def say_skipped(ctx: KernelContext, what: str) -> None:
    print(f"nbflows: {what} does nothing here: this kernel is running flow run {ctx.flow_run_id}")


def deploy_schedules(
    cron: str | None,
    interval: float | timedelta | None,
    rrule: str | None,
    timezone: str | None,
    schedules: list[Schedule | Mapping[str, Any]] | None,
) -> list[Schedule]:
    from nbflows.scheduling.schedules import make_schedule, parse_schedule

    chosen = [parse_schedule(s) for s in schedules or []]
    if cron is not None or interval is not None or rrule is not None:
        chosen.append(make_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone))
    elif timezone is not None:
        raise InvalidInput("timezone applies to a schedule: give cron=, interval= or rrule= too")
    return chosen


def deployment_image(image: DeploymentImage | str | None) -> DeploymentImage | None:
    if image is None or not isinstance(image, str):
        return image
    from nbflows.packaging.images import DeploymentImage

    return DeploymentImage(name=image)


def notebook_file(client: Client, notebook_path: str) -> Path:
    """The notebook's file: JPY_SESSION_NAME may be relative to the server's root."""
    path = Path(notebook_path)
    if not path.is_absolute():
        root = client.root_dir or call_server(
            client, "Deploying", lambda: client.health().get("root_dir")
        )
        path = Path(str(root or ".")) / path
    return path


def package_image(
    client: Client,
    notebook_path: str,
    flow_name: str,
    image: DeploymentImage,
    body: Mapping[str, Any],
    *,
    build: bool,
    push: bool,
) -> dict[str, Any]:
    """Build (and push) the deployment's image here, where the notebook and the Docker engine
    are, showing the build's progress in the cell; returns the deploy request's `image`."""
    from nbflows.packaging.build import build_for_deploy

    pool_name = str(body["work_pool_name"])
    pool = call_server(client, "Deploying", lambda: client.read_work_pool(pool_name))
    path = notebook_file(client, notebook_path)
    with _BuildProgress() as progress:
        return build_for_deploy(
            path,
            flow_name,
            image,
            pool,
            build=build,
            push=push,
            progress=progress,
            job_variables=body.get("job_variables"),
        )


class _BuildProgress:
    """The build's output in the cell, redrawn in place (at most every `INTERVAL` seconds):
    the step it is at and its last lines, so that a long `pip install` does not flood the
    notebook. Outside a kernel (plain IPython) the lines are printed as they come."""

    INTERVAL = 0.25
    KEPT = 12

    def __init__(self) -> None:
        from collections import deque

        from IPython.core.getipython import get_ipython

        self._in_kernel = getattr(get_ipython(), "kernel", None) is not None
        self._lines: deque[str] = deque(maxlen=self.KEPT)
        self._step = ""
        self._handle: Any = None
        self._shown = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> _BuildProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._in_kernel:
            self._show()

    def __call__(self, line: str) -> None:
        if not self._in_kernel:
            print(line, flush=True)
            return
        if line.startswith("Step "):
            self._step = line
        self._lines.append(line)
        if time.monotonic() - self._shown >= self.INTERVAL:
            self._show()

    def _show(self) -> None:
        from IPython.display import display

        took = time.monotonic() - self._started
        head = [f"[{took:.0f} s] {self._step}"] if self._step else []
        bundle = {"text/plain": "\n".join([*head, *self._lines])}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self._shown = time.monotonic()


def _no_server_message(action: str, detail: object) -> str:
    return (
        f"{action} needs a running nbflows server: scheduled and deployed runs are executed by "
        "`nbflows server` or by Jupyter (jupyter lab / jupyter server) with the nbflows "
        f"extension. Start one, then run this again. ({detail})"
    )


@contextmanager
def server_client(action: str) -> Iterator[Client]:
    from nbflows.client.api_errors import NoServerError
    from nbflows.client.rest import get_client

    try:
        client = get_client()
    except NoServerError as exc:
        raise NoServerError(_no_server_message(action, exc)) from None
    with client:
        yield client


def call_server(client: Client, action: str, request: Any) -> Any:
    from nbflows.client.api_errors import NoServerError

    try:
        return request()
    except NoServerError as exc:
        raise NoServerError(_no_server_message(action, exc)) from None


def deploy_summary(deployment: Mapping[str, Any], notebook_path: str, code: str) -> str:
    from nbflows.presentation import change_text
    from nbflows.scheduling.schedules import parse_schedule

    full_name = deployment.get("full_name") or f"{deployment.get('flow_name')}/{deployment['name']}"
    lines = [
        f"Deployed {full_name!r} (version {deployment.get('version')}) from {notebook_path} "
        f"to work pool {deployment.get('work_pool_name')!r}, "
        f"queue {deployment.get('work_queue_name') or 'default'!r}.",
        code,
    ]
    changes = deployment.get("changes") or []
    if changes:
        lines.append(f"Changed since version {deployment.get('version', 1) - 1}:")
        lines.extend(f"  {change_text(change)}" for change in changes)
    image = deployment.get("image") or {}
    if image.get("reference"):
        lines.append(f"Image: {image['reference']}")
    now = datetime.now(timezone.utc)
    for data in deployment.get("schedules") or []:
        schedule = parse_schedule(data)
        times = schedule.next_times(now, now + timedelta(days=400), limit=3)
        shown = ", ".join(_local_time(t, schedule.timezone) for t in times) or "none"
        lines.append(f"Schedule {schedule.describe()}: next runs {shown}")
    if deployment.get("paused"):
        lines.append("Paused: no run is scheduled until it is resumed.")
    lines.append(f"Run it now: nbflows deployment run '{full_name}'")
    return "\n".join(lines)


def _local_time(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
