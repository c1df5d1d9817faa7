"""`deploy_form(flow)`: deploy a flow (or a whole notebook) from a form instead of code.

The form holds what `Flow.deploy(...)` takes: a name, a pool (the pool picker, and whether an
existing deployment may move to it) and queue, a schedule (keep the deployment's, none, cron or
interval, from presets or typed, in a time zone), the parameters of the notebook's parameters
cell with an input of the right type each, and image options. Its Deploy button sends
`build_request()` -- the keyword arguments of `Flow.deploy` -- to the `deploy` callable, then says
what was deployed, what changed and when it runs next, or shows the server's refusal.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Unicode

from nbflows.client.rest import Client, get_client
from nbflows.errors import InvalidInput, NBFlowsError
from nbflows.presentation import change_text, format_timestamp, parse_timestamp
from nbflows.widgets.pool_picker import PoolPicker
from nbflows.widgets.saved_view import SavedView

__all__ = ["CRON_PRESETS", "INTERVAL_PRESETS", "DeployForm", "deploy_form", "parameter_input"]

CUSTOM = "custom"

#: (label, cron expression); the last one lets the user type an expression.
CRON_PRESETS: list[tuple[str, str]] = [
    ("every hour", "0 * * * *"),
    ("every day at 06:00", "0 6 * * *"),
    ("weekdays at 09:00", "0 9 * * 1-5"),
    ("Mondays at 06:00", "0 6 * * 1"),
    ("1st of the month at 06:00", "0 6 1 * *"),
    ("custom…", CUSTOM),
]

#: (label, seconds); the last one lets the user type a number of seconds.
INTERVAL_PRESETS: list[tuple[str, Any]] = [
    ("every 5 minutes", 300),
    ("every 15 minutes", 900),
    ("every hour", 3600),
    ("every 6 hours", 21600),
    ("every day", 86400),
    ("custom…", CUSTOM),
]

_LABEL = {"description_width": "8em"}
_WIDE = widgets.Layout(width="32em")

Deploy = Callable[..., Any]


def _timezones() -> list[str]:
    from zoneinfo import available_timezones

    return ["UTC", *sorted(available_timezones() - {"UTC"})]


def parameter_input(name: str, prop: Mapping[str, Any]) -> widgets.ValueWidget:
    """The input for one parameter of a notebook's parameter schema, by its JSON type.

    integer → IntText, number → FloatText, boolean → Checkbox, anything else → Text (arrays
    and objects typed as JSON; values of unknown type read as JSON when they parse).
    """
    kind = prop.get("type")
    default = prop.get("default")
    common: dict[str, Any] = {"description": name, "style": _LABEL}
    if prop.get("description"):
        common["tooltip"] = str(prop["description"])
    field: widgets.ValueWidget
    if kind == "integer":
        field = widgets.IntText(value=int(default) if default is not None else 0, **common)
    elif kind == "number":
        field = widgets.FloatText(value=float(default) if default is not None else 0.0, **common)
    elif kind == "boolean":
        field = widgets.Checkbox(value=bool(default), indent=True, **common)
    elif kind == "string":
        field = widgets.Text(value="" if default is None else str(default), **common)
    else:
        text = "" if default is None else json.dumps(default)
        hint = "JSON" if kind in ("array", "object") else "a value (JSON if it parses)"
        field = widgets.Text(value=text, placeholder=hint, **common)
    field.layout = widgets.Layout(width="32em")
    return field


def _read_parameter(name: str, prop: Mapping[str, Any], field: widgets.ValueWidget) -> Any:
    kind = prop.get("type")
    value = field.value
    if kind in ("integer", "number", "boolean", "string"):
        return value
    text = str(value).strip()
    if kind in ("array", "object"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        expected = list if kind == "array" else dict
        if not isinstance(parsed, expected):
            example = "[1, 2]" if kind == "array" else '{"a": 1}'
            raise InvalidInput(
                f"parameter {name!r} must be a JSON {'list' if kind == 'array' else 'object'}, "
                f"e.g. {example}; got {text!r}"
            )
        return parsed
    try:
        return json.loads(text)
    except ValueError:
        return text


class _Target:
    """What the form deploys: a `%%flow` Flow, or a whole notebook given by its path."""

    def __init__(self, flow: Any, client: Callable[[], Client]) -> None:
        self.flow = flow
        self._client = client
        if isinstance(flow, str | os.PathLike):
            self.path: str | None = os.path.abspath(os.fspath(flow))
            self.name = os.path.splitext(os.path.basename(self.path))[0]
            self.kind = "notebook"
        elif hasattr(flow, "deploy") and getattr(flow, "name", None):
            self.path = getattr(flow, "notebook_path", None)
            self.name = str(flow.name)
            self.kind = "flow"
        else:
            raise TypeError(
                "deploy_form() takes a Flow (bound by a %%flow cell) or the path of a notebook, "
                f"not {flow!r}"
            )

    def notebook_file(self) -> str | None:
        """The saved notebook the flow comes from, as a path this kernel can read."""
        if self.kind == "notebook":
            return self.path
        if self.path is None:
            from nbflows.client.context import current_context

            self.path = current_context().notebook_path
        if not self.path:
            return None
        if os.path.isabs(self.path) and os.path.exists(self.path):
            return self.path
        # JPY_SESSION_NAME may be relative to the server's root directory.
        candidates = [os.path.abspath(self.path)]
        try:
            client = self._client()
            root = client.root_dir or client.health().get("root_dir")
        except NBFlowsError:
            root = None
        if root:
            candidates.insert(0, os.path.join(str(root), self.path.lstrip("/")))
        return next((p for p in candidates if os.path.exists(p)), None)

    def parameter_properties(self) -> dict[str, dict[str, Any]]:
        path = self.notebook_file()
        if path is None:
            return {}
        from nbflows.notebooks.loading import load_notebook
        from nbflows.notebooks.parameters import parameter_schema

        _, nb = load_notebook(path, None)
        return dict(parameter_schema(nb).get("properties", {}))

    def default_deploy(self) -> Deploy:
        if self.kind == "flow":
            return self.flow.deploy
        path = self.path

        def deploy_notebook(**kwargs: Any) -> dict[str, Any]:
            client = self._client()
            return client.deploy(**_notebook_deploy_body(str(path), kwargs, client))

        return deploy_notebook


def _notebook_deploy_body(path: str, kwargs: Mapping[str, Any], client: Any) -> dict[str, Any]:
    """The REST body (docs/api.md) deploying a whole notebook from `Flow.deploy`-style kwargs.

    An image is built here, before the request, as `Flow.deploy` and the CLI do.
    """
    from nbflows.client.deploy import deploy_request, image_for_deploy

    keys = ("work_queue_name", "parameters", "job_variables", "tags", "paused", "description")
    body = deploy_request(
        path=path,
        name=kwargs["name"],
        work_pool_name=kwargs["work_pool_name"],
        cron=kwargs.get("cron"),
        interval=kwargs.get("interval"),
        rrule=kwargs.get("rrule"),
        timezone=kwargs.get("timezone"),
        schedules=kwargs.get("schedules"),
        move_pool=bool(kwargs.get("move_pool")),
        **{key: kwargs.get(key) for key in keys},
    )
    image = kwargs.get("image")
    if image is not None:
        body["image"] = image_for_deploy(
            client,
            path,
            None,
            image,
            kwargs["work_pool_name"],
            kwargs.get("job_variables"),
            build=kwargs.get("build", True),
            push=bool(kwargs.get("push", False)),
        )
    return body


def _field(deployment: Any, key: str) -> Any:
    if isinstance(deployment, Mapping):
        return deployment.get(key)
    return getattr(deployment, key, None)


class DeployForm(SavedView, widgets.VBox):
    """A form deploying one flow; `build_request()` is what its Deploy button sends.

    Traits: `deployment` (the last deployment made, as the API returns it; empty before) and
    `error` (the last refusal's message, empty after a success).
    """

    deployment = Dict()
    error = Unicode("")

    def __init__(
        self,
        flow: Any,
        deploy: Deploy | None = None,
        client: Client | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._client = client
        self.target = _Target(flow, lambda: self.client)
        self.deploy_callable = deploy or self.target.default_deploy()

        self.title = widgets.HTML(
            f"<b>Deploy {'notebook' if self.target.kind == 'notebook' else 'flow'} "
            f"<code>{html.escape(self.target.name)}</code></b>"
        )
        self.name = widgets.Text(
            description="Name", placeholder="e.g. nightly", style=_LABEL, layout=_WIDE
        )
        self.pool = PoolPicker(client=client)
        self.pool.dropdown.style = _LABEL
        self.queue = widgets.Dropdown(description="Queue", style=_LABEL, layout=_WIDE)
        self.pool.observe(lambda _: self._update_queues(), names=["value", "pools"])

        self.move_pool = widgets.Checkbox(
            description="if it runs on another pool, move it to this one",
            value=False,
            indent=True,
            style=_LABEL,
        )
        # Deploying again keeps the schedules unless the form says otherwise.
        self.schedule_kind = widgets.ToggleButtons(
            options=[
                ("keep", "keep"),
                ("none", "none"),
                ("cron", "cron"),
                ("interval", "interval"),
            ],
            value="keep",
            description="Schedule",
            tooltips=[
                "the deployment's schedules as they are (a new deployment has none)",
                "no schedule: removes the deployment's schedules",
                "a cron schedule, replacing the deployment's schedules",
                "an interval schedule, replacing the deployment's schedules",
            ],
            style={**_LABEL, "button_width": "6em"},
        )
        self.cron_preset = widgets.Dropdown(
            options=CRON_PRESETS,
            value=CRON_PRESETS[1][1],
            description="Runs",
            style=_LABEL,
            layout=_WIDE,
        )
        self.cron = widgets.Text(
            description="Cron",
            placeholder="minute hour day month weekday, e.g. 30 7 * * 1-5",
            style=_LABEL,
            layout=_WIDE,
        )
        self.interval_preset = widgets.Dropdown(
            options=INTERVAL_PRESETS, value=3600, description="Runs", style=_LABEL, layout=_WIDE
        )
        self.interval = widgets.BoundedIntText(
            value=600,
            min=1,
            max=100 * 366 * 86400,
            description="Seconds",
            style=_LABEL,
            layout=_WIDE,
        )
        self.timezone = widgets.Combobox(
            options=_timezones(),
            value="UTC",
            ensure_option=True,
            description="Time zone",
            placeholder="e.g. Europe/Paris",
            style=_LABEL,
            layout=_WIDE,
        )
        self.schedule_box = widgets.VBox()
        for control in (self.schedule_kind, self.cron_preset, self.interval_preset):
            control.observe(lambda _: self._update_schedule_box(), names="value")

        props = dict(schema["properties"]) if schema is not None else self._load_parameters()
        self.parameter_properties: dict[str, dict[str, Any]] = props
        self.parameters: dict[str, widgets.ValueWidget] = {
            name: parameter_input(name, prop) for name, prop in props.items()
        }
        params_intro = widgets.HTML(
            "<b>Parameters</b> <span style='opacity:0.7'>(from the parameters cell; changed values "
            "become the deployment's defaults)</span>"
            if props
            else "<span style='opacity:0.7'>No parameters cell: no parameters to set.</span>"
        )

        self.use_image = widgets.Checkbox(
            description="Run in a Docker image", value=False, indent=False
        )
        self.image_name = widgets.Text(
            description="Image",
            placeholder="name, e.g. sales or registry:5000/team/sales",
            style=_LABEL,
            layout=_WIDE,
        )
        self.image_tag = widgets.Text(
            description="Tag",
            placeholder="empty: computed from the content",
            style=_LABEL,
            layout=_WIDE,
        )
        self.dockerfile = widgets.Text(
            description="Dockerfile",
            value="auto",
            placeholder="auto, or a path",
            style=_LABEL,
            layout=_WIDE,
        )
        self.base_image = widgets.Text(
            description="Base image",
            placeholder="default: python:X.Y-slim",
            style=_LABEL,
            layout=_WIDE,
        )
        self.push = widgets.Checkbox(
            description="Push to the registry", value=False, indent=True, style=_LABEL
        )
        self.image_box = widgets.VBox(
            [self.image_name, self.image_tag, self.dockerfile, self.base_image, self.push]
        )
        self.use_image.observe(lambda _: self._update_image_box(), names="value")

        self.description_text = widgets.Text(
            description="Description", placeholder="optional", style=_LABEL, layout=_WIDE
        )
        self.deploy_button = widgets.Button(
            description="Deploy", button_style="primary", icon="rocket"
        )
        self.deploy_button.on_click(lambda _: self.submit())
        self.status = widgets.HTML()
        # What the deploy call prints (e.g. Flow.deploy's summary, image build output).
        self.output = widgets.Output()

        super().__init__(
            [
                self.title,
                self.name,
                self.pool,
                self.move_pool,
                self.queue,
                self.schedule_kind,
                self.schedule_box,
                params_intro,
                *self.parameters.values(),
                self.use_image,
                self.image_box,
                self.description_text,
                widgets.HBox([self.deploy_button, self.status]),
                self.output,
            ],
            **kwargs,
        )
        self._update_queues()
        self._update_schedule_box()
        self._update_image_box()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = get_client()
        return self._client

    # -- the request ---------------------------------------------------------------------------

    def build_request(self) -> dict[str, Any]:
        """The keyword arguments of `Flow.deploy(...)` the form describes.

        Optional values the user left alone are omitted, so the callee's defaults apply.
        Parameters are sent only when they differ from the notebook's defaults. Raises
        `InvalidInput` saying what to fix when the form is incomplete.
        """
        name = self.name.value.strip()
        if not name:
            raise InvalidInput("give the deployment a name (e.g. nightly)")
        if not self.pool.value:
            raise InvalidInput(
                "choose a work pool" + (f" ({self.pool.error})" if self.pool.error else "")
            )
        request: dict[str, Any] = {"name": name, "work_pool_name": self.pool.value}
        if self.move_pool.value:
            request["move_pool"] = True
        if self.queue.value:
            request["work_queue_name"] = self.queue.value
        parameters = self._parameter_values()
        if parameters:
            request["parameters"] = parameters
        request.update(self._schedule())
        request.update(self._image())
        description = self.description_text.value.strip()
        if description:
            request["description"] = description
        return request

    def submit(self) -> Any:
        """What the Deploy button does: deploy, then report; returns the deployment or None."""
        try:
            request = self.build_request()
        except NBFlowsError as exc:
            self._fail(exc.message)
            return None
        self.deploy_button.disabled = True
        self.status.value = "deploying…"
        self.output.clear_output()
        # Output's context manager swallows exceptions when a shell is around (it shows them
        # itself), so the outcome is caught inside it and handled after.
        outcome: dict[str, Any] = {}
        with self.output:
            try:
                outcome["deployment"] = self.deploy_callable(**request)
            except Exception as exc:
                outcome["error"] = exc
        self.deploy_button.disabled = False
        error = outcome.get("error")
        if isinstance(error, NBFlowsError):
            self._fail(error.message)
            return None
        if error is not None:
            # A widget callback's exception would only reach the browser console: show it here.
            self._fail(f"{type(error).__name__}: {error}")
            return None
        deployment = outcome["deployment"]
        self.error = ""
        self.deployment = dict(deployment) if isinstance(deployment, Mapping) else {}
        self.status.value = self._success_html(deployment, request)
        return deployment

    # -- internals -----------------------------------------------------------------------------

    def _load_parameters(self) -> dict[str, dict[str, Any]]:
        try:
            return self.target.parameter_properties()
        except NBFlowsError:
            # An unreadable notebook: deploying says why, with the server's words.
            return {}

    def _parameter_values(self) -> dict[str, Any]:
        values = {}
        for name, field in self.parameters.items():
            prop = self.parameter_properties[name]
            value = _read_parameter(name, prop, field)
            if prop.get("type") not in ("integer", "number", "boolean") and value == "":
                continue  # left empty: the notebook's own value is used
            if (
                "default" in prop
                and value == prop["default"]
                and type(value) is type(prop["default"])
            ):
                continue
            values[name] = value
        return values

    def _schedule(self) -> dict[str, Any]:
        kind = self.schedule_kind.value
        if kind == "keep":
            return {}
        if kind == "none":
            return {"schedules": []}
        if kind == "cron":
            expression = self.cron_preset.value
            if expression == CUSTOM:
                expression = self.cron.value.strip()
                if not expression:
                    raise InvalidInput(
                        "type a cron expression, e.g. 30 7 * * 1-5, or pick a preset"
                    )
            chosen: dict[str, Any] = {"cron": expression}
        else:
            seconds = self.interval_preset.value
            if seconds == CUSTOM:
                seconds = int(self.interval.value)
            chosen = {"interval": seconds}
        zone = self.timezone.value.strip() or "UTC"
        chosen["timezone"] = zone
        from nbflows.scheduling.schedules import make_schedule

        make_schedule(**chosen)  # a bad cron or time zone is said now, with the schedule's words
        return chosen

    def _image(self) -> dict[str, Any]:
        if not self.use_image.value:
            return {}
        name = self.image_name.value.strip()
        if not name:
            raise InvalidInput(
                "give the image a name (e.g. sales), or untick 'Run in a Docker image'"
            )
        from nbflows.packaging.images import DeploymentImage

        image = DeploymentImage(
            name=name,
            tag=self.image_tag.value.strip() or None,
            dockerfile=self.dockerfile.value.strip() or "auto",
            base_image=self.base_image.value.strip() or None,
        )
        return {"image": image, "push": bool(self.push.value)}

    def _update_queues(self) -> None:
        pool = self.pool.pool
        queues = (
            sorted(pool.get("queues") or [], key=lambda q: q.get("priority") or 0) if pool else []
        )
        previous = self.queue.value
        self.queue.options = [
            (f"{q['name']} (priority {q.get('priority')})", q["name"]) for q in queues
        ]
        names = [q["name"] for q in queues]
        if previous in names:
            self.queue.value = previous
        elif "default" in names:
            self.queue.value = "default"
        self.queue.disabled = not queues

    def _update_schedule_box(self) -> None:
        kind = self.schedule_kind.value
        children: list[widgets.Widget] = []
        if kind == "cron":
            children.append(self.cron_preset)
            if self.cron_preset.value == CUSTOM:
                children.append(self.cron)
        elif kind == "interval":
            children.append(self.interval_preset)
            if self.interval_preset.value == CUSTOM:
                children.append(self.interval)
        if kind in ("cron", "interval"):
            children.append(self.timezone)
        self.schedule_box.children = children

    def _update_image_box(self) -> None:
        self.image_box.layout.display = "" if self.use_image.value else "none"

    def _fail(self, message: str) -> None:
        self.error = message
        self.status.value = (
            '<span style="color:var(--jp-error-color1,#c62828);white-space:pre-wrap">'
            f"✗ {html.escape(message)}</span>"
        )

    def _success_html(self, deployment: Any, request: Mapping[str, Any]) -> str:
        full_name = _field(deployment, "full_name") or f"{self.target.name}/{request['name']}"
        parts = [f"✓ Deployed <b>{html.escape(str(full_name))}</b>"]
        version = _field(deployment, "version")
        if version is not None:
            parts.append(f" (version {html.escape(str(version))})")
        parts.append(f" to pool <b>{html.escape(str(request['work_pool_name']))}</b>.")
        deployment_id = _field(deployment, "id")
        schedules = _field(deployment, "schedules") or []
        if deployment_id and schedules:
            zone = str(schedules[0].get("timezone") or "UTC")
            times = self._next_runs(str(deployment_id))
            shown = ", ".join(_in_zone(run.get("expected_start_time"), zone) for run in times)
            parts.append(f" Next runs: {html.escape(shown) if shown else 'being scheduled'}.")
        elif deployment_id:
            parts.append(" No schedule: run it with <code>nbflows deployment run</code>.")
        changes = _field(deployment, "changes") or []
        if changes:
            listed = "; ".join(change_text(change) for change in changes)
            parts.append(f" Changed: {html.escape(listed)}.")
        return '<span style="color:var(--jp-success-color1,#2e7d32)">' + "".join(parts) + "</span>"

    def _next_runs(self, deployment_id: str, attempts: int = 15) -> list[dict[str, Any]]:
        # The server's scheduler creates the runs just after the deploy: give it a moment.
        for attempt in range(attempts):
            try:
                runs = self.client.upcoming_runs(deployment_id, limit=3)
            except NBFlowsError:
                return []
            if runs or attempt == attempts - 1:
                return runs
            time.sleep(0.2)
        return []


def _in_zone(value: str | None, zone: str) -> str:
    from zoneinfo import ZoneInfo

    moment = parse_timestamp(value)
    if moment is None:
        return format_timestamp(value)
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    except (KeyError, ValueError):
        return format_timestamp(value)


def deploy_form(
    flow: Any,
    deploy: Deploy | None = None,
    client: Client | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
) -> DeployForm:
    """A form that deploys `flow` (a `%%flow` Flow, or the path of a notebook to deploy whole).

    The Deploy button calls `deploy(**form.build_request())` -- by default `flow.deploy`, or
    for a notebook path a `POST deployments` of the whole notebook -- and shows the deployment's
    full name and next run times, or the server's error message. The parameter inputs come from
    the notebook's parameters cell (or `schema`, a JSON schema with `properties`).
    """
    return DeployForm(flow, deploy, client, schema=schema)
