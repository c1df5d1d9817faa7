"""`run_history()`: a flow's or a deployment's recent runs, as a table and a duration timeline.

The timeline is a small inline SVG (one bar per run, oldest on the left, height = duration,
colour = state), so it needs nothing beyond the HTML widget.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from traitlets import List, Unicode

from nbflows.client.rest import Client, get_client
from nbflows.errors import NBFlowsError
from nbflows.presentation import (
    STATE_COLOURS,
    UNKNOWN_STATE_COLOUR,
    format_duration,
    format_timestamp,
    state_badge,
)
from nbflows.widgets.run_logs import dashboard_link, short_json
from nbflows.widgets.saved_view import SavedView

__all__ = ["RunHistory", "run_history", "timeline_svg"]

_BAR_WIDTH = 14
_BAR_GAP = 4
_CHART_HEIGHT = 60
_MAX_PARAMETERS_CHARS = 80


def ran_by(run: Mapping[str, Any]) -> str:
    """Who ran it: "interactive" for a `%%flow` cell run, else the worker (once claimed)."""
    if run.get("kind") == "interactive":
        return "interactive"
    return str(run.get("worker_name") or "—")


def _parameters_text(parameters: Mapping[str, Any] | None) -> str:
    if not parameters:
        return ""
    text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in parameters.items())
    if len(text) > _MAX_PARAMETERS_CHARS:
        text = text[: _MAX_PARAMETERS_CHARS - 1] + "…"
    return text


def _outputs_text(outputs: Mapping[str, Any] | None) -> str:
    if not outputs:
        return ""
    return short_json(dict(outputs), _MAX_PARAMETERS_CHARS)


def timeline_svg(runs: Sequence[Mapping[str, Any]]) -> str:
    """An SVG bar chart of run durations, oldest first, coloured by state, with tooltips."""
    ordered = list(reversed(runs))  # the API answers newest first
    if not ordered:
        return ""
    longest = max((float(r.get("duration") or 0) for r in ordered), default=0.0) or 1.0
    width = len(ordered) * (_BAR_WIDTH + _BAR_GAP)
    bars = []
    for i, run in enumerate(ordered):
        state = run.get("state") or {}
        colour = STATE_COLOURS.get(str(state.get("type")), UNKNOWN_STATE_COLOUR)
        duration = run.get("duration")
        # A run that has not started is a short stub, so it still shows (and has a tooltip).
        height = max(3.0, float(duration) / longest * (_CHART_HEIGHT - 4)) if duration else 3.0
        started = format_timestamp(run.get("start_time") or run.get("expected_start_time"))
        tip = (
            f"{run.get('name')} — {state.get('name') or state.get('type')} — "
            f"{format_duration(duration)} — {started}"
        )
        x = i * (_BAR_WIDTH + _BAR_GAP)
        y = _CHART_HEIGHT - height
        bars.append(
            f'<rect x="{x}" y="{y:.1f}" width="{_BAR_WIDTH}" height="{height:.1f}" rx="2" '
            f'fill="{colour}"><title>{html.escape(tip)}</title></rect>'
        )
    return (
        f'<svg class="nbflows-timeline" width="{width}" height="{_CHART_HEIGHT}" '
        f'viewBox="0 0 {width} {_CHART_HEIGHT}" role="img" aria-label="run durations">'
        + "".join(bars)
        + "</svg>"
    )


def history_html(runs: Sequence[Mapping[str, Any]], client: Client | None = None) -> str:
    """The table of runs (newest first) under their timeline."""
    if not runs:
        return "<i>No runs yet.</i>"
    rows = []
    for run in runs:
        name = html.escape(str(run.get("name") or run.get("id")))
        if client is not None:
            href = html.escape(dashboard_link(client, "runs", str(run["id"])))
            name = f'<a href="{href}" target="_blank" rel="noopener">{name}</a>'
        rows.append(
            "<tr>"
            f"<td>{name}</td>"
            f"<td>{state_badge(run.get('state'))}</td>"
            f"<td>{format_timestamp(run.get('start_time') or run.get('expected_start_time'))}</td>"
            f"<td style='text-align:right'>{format_duration(run.get('duration'))}</td>"
            f"<td><code>{html.escape(_parameters_text(run.get('parameters')))}</code></td>"
            f"<td>{html.escape(ran_by(run))}</td>"
            f"<td><code>{html.escape(_outputs_text(run.get('outputs')))}</code></td>"
            "</tr>"
        )
    head = "".join(
        f"<th style='text-align:left;padding-right:12px'>{h}</th>"
        for h in ("Run", "State", "Start", "Duration", "Parameters", "Ran by", "Outputs")
    )
    return (
        f"<div style='margin:4px 0'>{timeline_svg(runs)}</div>"
        "<table class='nbflows-runs' style='border-collapse:collapse;font-size:90%'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


class RunHistory(SavedView, widgets.VBox):
    """Recent runs of a flow or a deployment; `refresh()` (or the button) reloads them.

    Traits: `runs` (FlowRun dicts, newest first) and `error` (why none could be read).
    """

    runs: List[dict[str, Any]] = List()
    error = Unicode("")

    def __init__(
        self,
        flow_name: str | None = None,
        deployment: str | None = None,
        limit: int = 20,
        client: Client | None = None,
        *,
        load: bool = True,
        **kwargs: Any,
    ) -> None:
        self.flow_name = flow_name
        self.deployment = deployment
        self.limit = limit
        self._client = client
        what = (
            f"deployment <code>{html.escape(deployment)}</code>"
            if deployment
            else f"flow <code>{html.escape(flow_name)}</code>"
            if flow_name
            else "all flows"
        )
        self.title = widgets.HTML(f"<b>Recent runs</b> of {what}")
        self.refresh_button = widgets.Button(
            icon="refresh", tooltip="Reload the runs", layout=widgets.Layout(width="2.6em")
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self.table = widgets.HTML()
        super().__init__([widgets.HBox([self.title, self.refresh_button]), self.table], **kwargs)
        if load:
            self.refresh()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = get_client()
        return self._client

    def refresh(self) -> None:
        try:
            deployment_id = None
            if self.deployment:
                deployment_id = str(self.client.read_deployment(self.deployment)["id"])
            runs = self.client.list_flow_runs(
                flow_name=self.flow_name, deployment_id=deployment_id, limit=self.limit
            )
        except NBFlowsError as exc:
            self.error = exc.message
            self.runs = []
            self.table.value = (
                '<span style="color:var(--jp-error-color1,#c62828)">'
                f"⚠ {html.escape(exc.message)}</span>"
            )
            return
        self.error = ""
        self.runs = runs
        self.table.value = history_html(runs, self.client)


def run_history(
    flow_name: str | None = None,
    deployment: str | None = None,
    limit: int = 20,
    client: Client | None = None,
) -> RunHistory:
    """A table of the most recent runs (state, start, duration, parameters, who ran it) and a
    timeline of their durations, for one flow, one deployment (`"flow/name"` or an id) or all."""
    from nbflows.client.context import current_context

    if current_context().headless:
        history = RunHistory(flow_name, deployment, limit, client, load=False)
        history.table.value = "nbflows: run history is not shown while a worker runs this notebook"
        return history
    return RunHistory(flow_name, deployment, limit, client)
