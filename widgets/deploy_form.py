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
import time
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Unicode

from nbflows.client.rest import Client, get_client
from nbflows.errors import InvalidInput, NBFlowsError
from nbflows.presentation import change_text
from nbflows.widgets.deploy_target import Deploy, Target, deployment_field
from nbflows.widgets.parameter_inputs import LABEL_STYLE, parameter_input, read_parameter
from nbflows.widgets.pool_picker import PoolPicker
from nbflows.widgets.schedule_presets import (
    CRON_PRESETS,
    CUSTOM,
    INTERVAL_PRESETS,
    in_zone,
    timezones,
)

__all__ = ["DeployForm", "deploy_form"]
_WIDE = widgets.Layout(width="32em")


class DeployForm(widgets.VBox):
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
        self.target = Target(flow, lambda: self.client)
        self.deploy_callable = deploy or self.target.default_deploy()

        self.title = widgets.HTML(
            f"<b>Deploy {'notebook' if self.target.kind == 'notebook' else 'flow'} "
            f"<code>{html.escape(self.target.name)}</code></b>"
        )
        self.name = widgets.Text(
            description="Name", placeholder="e.g. nightly", style=LABEL_STYLE, layout=_WIDE
        )
        self.pool = PoolPicker(client=client)
        self.pool.dropdown.style = LABEL_STYLE
        self.queue = widgets.Dropdown(description="Queue", style=LABEL_STYLE, layout=_WIDE)
        self.pool.observe(lambda _: self._update_queues(), names=["value", "pools"])

        self.move_pool = widgets.Checkbox(
            description="if it runs on another pool, move it to this one",
            value=False,
            indent=True,
            style=LABEL_STYLE,
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
            style={**LABEL_STYLE, "button_width": "6em"},
        )
        self.cron_preset = widgets.Dropdown(
            options=CRON_PRESETS,
            value=CRON_PRESETS[1][1],
            description="Runs",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.cron = widgets.Text(
            description="Cron",
            placeholder="minute hour day month weekday, e.g. 30 7 * * 1-5",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.interval_preset = widgets.Dropdown(
            options=INTERVAL_PRESETS,
            value=3600,
            description="Runs",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.interval = widgets.BoundedIntText(
            value=600,
            min=1,
            max=100 * 366 * 86400,
            description="Seconds",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.timezone = widgets.Combobox(
            options=timezones(),
            value="UTC",
            ensure_option=True,
            description="Time zone",
            placeholder="e.g. Europe/Paris",
            style=LABEL_STYLE,
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
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.image_tag = widgets.Text(
            description="Tag",
            placeholder="empty: computed from the content",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.dockerfile = widgets.Text(
            description="Dockerfile",
            value="auto",
            placeholder="auto, or a path",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.base_image = widgets.Text(
            description="Base image",
            placeholder="default: python:X.Y-slim",
            style=LABEL_STYLE,
            layout=_WIDE,
        )
        self.push = widgets.Checkbox(
            description="Push to the registry", value=False, indent=True, style=LABEL_STYLE
        )
        self.image_box = widgets.VBox(
            [self.image_name, self.image_tag, self.dockerfile, self.base_image, self.push]
        )
        self.use_image.observe(lambda _: self._update_image_box(), names="value")

        self.description_text = widgets.Text(
            description="Description", placeholder="optional", style=LABEL_STYLE, layout=_WIDE
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
            value = read_parameter(name, prop, field)
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
        full_name = (
            deployment_field(deployment, "full_name") or f"{self.target.name}/{request['name']}"
        )
        parts = [f"✓ Deployed <b>{html.escape(str(full_name))}</b>"]
        version = deployment_field(deployment, "version")
        if version is not None:
            parts.append(f" (version {html.escape(str(version))})")
        parts.append(f" to pool <b>{html.escape(str(request['work_pool_name']))}</b>.")
        deployment_id = deployment_field(deployment, "id")
        schedules = deployment_field(deployment, "schedules") or []
        if deployment_id and schedules:
            zone = str(schedules[0].get("timezone") or "UTC")
            times = self._next_runs(str(deployment_id))
            shown = ", ".join(in_zone(run.get("expected_start_time"), zone) for run in times)
            parts.append(f" Next runs: {html.escape(shown) if shown else 'being scheduled'}.")
        elif deployment_id:
            parts.append(" No schedule: run it with <code>nbflows deployment run</code>.")
        changes = deployment_field(deployment, "changes") or []
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
