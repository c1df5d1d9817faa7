"""`pipeline_graph(run)`: a pipeline run's DAG with live step states, inline in the notebook.

The picture is the same server-side SVG the dashboard shows (`nbflows.pipelines.picture`),
drawn from `GET flow_runs/{id}/pipeline`, in an HTML widget that a background thread refreshes
until the run ends (`refresh()` redraws it at once).
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Unicode

from nbflows.client.rest import Client, get_client
from nbflows.errors import NBFlowsError
from nbflows.pipelines.picture import render_svg
from nbflows.protocol import TERMINAL_VALUES as TERMINAL_STATES
from nbflows.widgets.saved_view import SavedView

from .run_logs import dashboard_link, outputs_html, run_id_of

__all__ = ["PipelineGraph", "pipeline_graph"]


class PipelineGraph(SavedView, widgets.VBox):
    """The DAG of one pipeline run. Traits: `graph` (the API's answer), `state`, `error`."""

    graph: Dict[str, Any] = Dict()
    state = Unicode("")
    error = Unicode("")

    def __init__(
        self, run: Any, client: Client | None = None, *, interval: float = 1.0, follow: bool = True
    ) -> None:
        self.run_id = run_id_of(run)
        self._client = client
        self.interval = interval
        self.picture = widgets.HTML()
        self.table = widgets.HTML()
        super().__init__([self.picture, self.table])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if follow and self.state not in TERMINAL_STATES:
            self._thread = threading.Thread(target=self._follow, name="nbflows-dag", daemon=True)
            self._thread.start()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = get_client()
        return self._client

    def refresh(self) -> None:
        try:
            graph = self.client.read_pipeline_run(self.run_id)
        except NBFlowsError as exc:
            self.error = exc.message
            self.picture.value = f'<span style="color:var(--jp-error-color1,#c62828)">⚠ {html.escape(exc.message)}</span>'
            return
        self.error = ""
        self.graph = graph
        self.state = str((graph["flow_run"].get("state") or {}).get("type") or "")
        self.picture.value = render_svg(graph)
        self.table.value = _steps_html(graph, self._link())

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ended (or `timeout`); returns the last graph."""
        if self._thread is not None:
            self._thread.join(timeout)
        return dict(self.graph)

    def close(self) -> None:
        self._stop.set()
        super().close()

    def _link(self) -> str | None:
        try:
            return dashboard_link(self.client, "runs", self.run_id)
        except NBFlowsError:
            return None

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()
            if self.state in TERMINAL_STATES:
                return


def _steps_html(graph: dict[str, Any], link: str | None) -> str:
    run = graph["flow_run"]
    state = run.get("state") or {}
    head = f"<b>{html.escape(str(run.get('name')))}</b> · {html.escape(str(state.get('type')))}"
    if state.get("message"):
        head += f" · {html.escape(str(state['message']).splitlines()[0])}"
    if link:
        head += f' · <a href="{html.escape(link)}" target="_blank" rel="noopener">run page ↗</a>'
    rows = "".join(
        f"<tr><td>{html.escape(sr['label'])}</td><td>{html.escape(sr['state'].lower())}</td>"
        f"<td>{outputs_html(sr.get('outputs'))}</td>"
        f"<td>{html.escape(sr.get('message') or '')}</td></tr>"
        for sr in graph["step_runs"]
    )
    return f"<div>{head}</div><table style='font-size:90%'>{rows}</table>"


def pipeline_graph(run: Any, client: Client | None = None, *, follow: bool = True) -> PipelineGraph:
    """The DAG of pipeline run `run` (a run dict or id), refreshed live until it ends."""
    return PipelineGraph(run, client, follow=follow)
