"""The dashboard at `{base_url}nbflows/`: Work Pools, Deployments and Flow Runs, server-rendered.

Pages read the store through the same service functions as the REST API (on the orchestrator's
threads, never on the event loop). The buttons of the pages (pause, resume, run now, cancel) are
a little plain JavaScript calling that REST API; a run's page follows its logs with the logs
long-poll. Executed notebooks are rendered with nbconvert's basic HTML template in a thread and
shown in a sandboxed frame, so nothing a notebook printed runs as the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from datetime import timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from markupsafe import Markup
from sqlalchemy.orm import Session
from tornado import web

from nbflows.automations import outbox
from nbflows.automations import rules as automation_rules
from nbflows.errors import NBFlowsError
from nbflows.extension.orchestrator import Orchestrator
from nbflows.presentation import format_duration, parse_timestamp
from nbflows.protocol import TERMINAL_VALUES, StateType
from nbflows.results import ResultStore, run_files
from nbflows.services import deployments, flow_runs, heartbeats, logs
from nbflows.services import work_pools as pools
from nbflows.services.limits import size_text
from nbflows.services.schemas.deployments import DeploymentReply
from nbflows.services.schemas.logs import LogLineReply

__all__ = ["HANDLERS", "render_notebook_html"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
#: Runs per page of the Flow Runs tab.
RUNS_PER_PAGE = 50
#: Log lines rendered with a run's page; the page's script fetches the rest.
FIRST_LOG_PAGE = 1000
#: Next scheduled runs shown per deployment.
UPCOMING = 3
#: The terminal states, for the templates and (through `data-terminal-states`) the page scripts.
TERMINAL = sorted(TERMINAL_VALUES)


# --------------------------------------------------------------------------------------------
# Formatting (Jinja filters)


def format_when(value: Any) -> str:
    moment = parse_timestamp(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def describe_schedule(schedule: dict[str, Any]) -> str:
    """The schedule's own words (`Schedule.describe`), the same text the CLI prints."""
    from nbflows.scheduling.schedules import parse_schedule

    return parse_schedule(schedule).describe()


def compact_json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


def ran_by(run: dict[str, Any]) -> str:
    if run.get("kind") == "interactive":
        return "interactive"
    return str(run.get("worker_name") or "—")


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=format_when,
        duration=format_duration,
        schedule=describe_schedule,
        compact_json=compact_json,
        ran_by=ran_by,
    )
    return env


# --------------------------------------------------------------------------------------------
# Executed notebooks


@cache
def _notebook_css() -> str:
    from pygments.formatters import HtmlFormatter

    own = (STATIC / "notebook.css").read_text(encoding="utf-8")
    return own + "\n" + str(HtmlFormatter(style="default").get_style_defs(".highlight"))


def render_notebook_html(notebook_json: str) -> str:
    """A standalone HTML page of an executed notebook (nbconvert's basic template + styles).

    Slow (nbconvert): call it in a thread, never on the event loop.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.reads(notebook_json, as_version=4)
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    return (
        _templates()
        .get_template("notebook.html")
        .render(css=Markup(_notebook_css()), body=Markup(body))
    )


# --------------------------------------------------------------------------------------------
# Reads (each runs in one session on the orchestrator's threads)


def _pools_page(s: Session) -> list[dict[str, Any]]:
    out = []
    for pool in pools.list_work_pools(s):
        item = pools.work_pool_json(s, pool)
        item["workers"] = heartbeats.list_workers(s, pool.name)
        out.append(item)
    return out


def _upcoming_times(s: Session, deployment_id: str, limit: int) -> list[str | None]:
    runs = deployments.upcoming_runs(s, deployment_id, limit)
    return [format_when(r.expected_start_time) for r in runs]


def _deployments_page(s: Session) -> list[dict[str, Any]]:
    out = []
    for d in deployments.list_deployments(s):
        item = DeploymentReply.serialise(d)
        item["upcoming"] = _upcoming_times(s, d.id, UPCOMING)
        item["run_form"] = _run_form_fields(item)
        out.append(item)
    return out


def _run_form_fields(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs of a deployment's "Run now" form: one per parameter, typed, with its value."""
    from nbflows.notebooks.parameters import parameter_defaults

    schema = deployment.get("parameter_schema") or {}
    props = schema.get("properties") or {}
    values = parameter_defaults(schema, deployment.get("parameters"))
    fields = []
    for name, prop in props.items():
        value = values[name]
        kind = prop.get("type")
        fields.append(
            {
                "name": name,
                "type": kind or "any",
                "value": value,
                # What the input shows; JSON for anything that is not a plain scalar input.
                "text": value
                if kind in ("string", "integer", "number") and value is not None
                else ("" if value is None else json.dumps(value)),
                "initial": json.dumps(value),
                "description": prop.get("description") or "",
            }
        )
    return fields


def _runs_page(
    s: Session, state: str | None, deployment_id: str | None, flow_name: str | None, offset: int
) -> dict[str, Any]:
    runs = flow_runs.list_flow_runs(
        s,
        state=[state] if state else None,
        deployment_id=deployment_id,
        flow_name=flow_name,
        limit=RUNS_PER_PAGE + 1,
        offset=offset,
    )
    return {
        "runs": flow_runs.runs_json(s, runs[:RUNS_PER_PAGE]),
        "more": len(runs) > RUNS_PER_PAGE,
        "deployments": [
            {"id": d.id, "full_name": f"{d.flow_name}/{d.name}"}
            for d in deployments.list_deployments(s)
        ],
    }


def _automations_page(s: Session) -> list[dict[str, Any]]:
    out = []
    for rule in automation_rules.list_automations(s):
        item = automation_rules.automation_json(s, rule)
        item["trigger_text"] = automation_rules.describe_trigger(rule.trigger)
        item["deliveries"] = outbox.deliveries_of_automation(s, rule.id, limit=5)
        out.append(item)
    return out


def _run_page(s: Session, run_id: str, results: ResultStore) -> dict[str, Any]:
    run = flow_runs.get_flow_run(s, run_id)
    lines = logs.read_logs(s, run_id, 0, FIRST_LOG_PAGE)
    notebook = flow_runs.read_notebook(s, run_id, results) if run.has_notebook else None
    return {
        "run": flow_runs.run_json(s, run),
        "lines": [LogLineReply.serialise(x) for x in lines],
        "next_after": lines[-1].id if lines else 0,
        "notebook": notebook,
        "notifications": outbox.deliveries_of_run(s, run_id),
        "pipeline": _pipeline_picture(s, run) if run.kind == "pipeline" else None,
        "artifacts": [
            {"name": f.name, "size": size_text(f.size)}
            for f in run_files.list_run_files(s, run_id, "artifact")
        ],
    }


def _pipeline_picture(s: Session, run: Any) -> dict[str, Any]:
    """A pipeline run's steps and its DAG as SVG (built from escaped text: safe to inline)."""
    from nbflows.pipelines.graph import pipeline_graph
    from nbflows.pipelines.picture import render_svg

    try:
        graph = pipeline_graph(s, run)
    except NBFlowsError as exc:
        return {"svg": None, "step_runs": [], "problem": exc.message}
    return {"svg": Markup(render_svg(graph)), "step_runs": graph["step_runs"], "problem": None}


def _dag_svg(s: Session, run_id: str) -> str:

    picture = _pipeline_picture(s, flow_runs.get_flow_run(s, run_id))
    return str(picture["svg"] or "")


# --------------------------------------------------------------------------------------------
# Handlers


class DashboardHandler(JupyterHandler):
    """Dashboard pages: Jupyter authentication + authorization on resource `nbflows`."""

    auth_resource = "nbflows"

    @property
    def orch(self) -> Orchestrator:
        return self.settings["nbflows_orchestrator"]

    @property
    def nbflows_url(self) -> str:
        return self.base_url.rstrip("/") + "/nbflows/"

    def render_page(self, template: str, **context: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(self._render(template, **context))

    async def render_big_page(self, template: str, **context: Any) -> None:
        """`render_page` for pages that hold an executed notebook (megabytes of HTML to
        escape and encode): rendered on the orchestrator's threads."""
        page_context = self._page_context()  # here: it may set the _xsrf cookie

        def render() -> bytes:
            page = _templates().get_template(template).render(**page_context, **context)
            return page.encode("utf-8")

        page = await self.orch.compute(render)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)

    def compute_etag(self) -> str | None:
        return None  # pages are never cached (no-store): no hashing of megabytes on the loop

    def _render(self, template: str, **context: Any) -> str:
        return _templates().get_template(template).render(**self._page_context(), **context)

    def _page_context(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "nbflows_url": self.nbflows_url,
            "api_url": self.nbflows_url + "api/",
            "static_url": self.nbflows_url + "static/",
            # Reading the token also sets the _xsrf cookie that the REST calls must match.
            "xsrf_token": self.xsrf_token.decode("utf-8"),
            "terminal_states": TERMINAL,
        }

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NBFlowsError):
            status_code, message = exc.status, exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message else (exc.reason or "")
        else:
            message = "the server failed to show this page; its log says why"
        self.set_status(status_code)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            self._render(
                "error.html", tab=None, status=status_code, reason=self._reason, message=message
            )
        )

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NBFlowsError):  # a user mistake, answered clearly: no traceback
            self.log.info("%s %s: %s", self.request.method, self.request.uri, value.message)
            return
        super().log_exception(typ, value, tb)


class PoolsPage(DashboardHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.render_page("pools.html", tab="pools", pools=await self.orch.call(_pools_page))


class DeploymentsPage(DashboardHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        items = await self.orch.call(_deployments_page)
        self.render_page("deployments.html", tab="deployments", deployments=items)


class AutomationsPage(DashboardHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        items = await self.orch.call(_automations_page)
        self.render_page("automations.html", tab="automations", automations=items)


class RunsPage(DashboardHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        state = (self.get_query_argument("state", "") or "").strip().upper() or None
        deployment_id = self.get_query_argument("deployment", "") or None
        flow_name = (self.get_query_argument("flow", "") or "").strip() or None
        try:
            offset = max(int(self.get_query_argument("offset", "0") or 0), 0)
        except ValueError:
            offset = 0
        data = await self.orch.call(_runs_page, state, deployment_id, flow_name, offset)
        filters = {"state": state or "", "deployment": deployment_id or "", "flow": flow_name or ""}

        def page_link(at: int) -> str:
            query = {k: v for k, v in filters.items() if v}
            if at:
                query["offset"] = str(at)
            return self.nbflows_url + "runs" + (f"?{urlencode(query)}" if query else "")

        self.render_page(
            "runs.html",
            tab="runs",
            filters=filters,
            states=[s.value for s in StateType],
            newer=page_link(max(offset - RUNS_PER_PAGE, 0)) if offset else None,
            older=page_link(offset + RUNS_PER_PAGE) if data["more"] else None,
            **data,
        )


class RunPage(DashboardHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        data = await self.orch.call(_run_page, run_id, self.orch.results)
        notebook_html = None
        text = data.pop("notebook")
        if text is not None:
            loop = asyncio.get_running_loop()
            notebook_html = await loop.run_in_executor(None, render_notebook_html, text)
        await self.render_big_page(
            "run.html",
            tab="runs",
            notebook_html=notebook_html,
            notebook_url=f"{self.nbflows_url}runs/{quote(run_id, safe='')}/notebook",
            **data,
        )


class RunNotebookPage(DashboardHandler):
    """The executed notebook as a standalone page (shown in the run page's sandboxed frame)."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        text = await self.orch.call(flow_runs.read_notebook, run_id, self.orch.results)
        page = await asyncio.get_running_loop().run_in_executor(
            None, lambda: render_notebook_html(text).encode("utf-8")
        )
        # Opened on its own, the page is still sandboxed: a notebook's outputs never run here.
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(page)


class RunDagPicture(DashboardHandler):
    """A pipeline run's DAG with live step states, as SVG (the run page reloads it)."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        svg = await self.orch.call(_dag_svg, run_id)
        if not svg:
            raise web.HTTPError(404, "flow run %s is not a pipeline run", run_id)
        self.set_header("Content-Type", "image/svg+xml; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(svg)


class StaticFile(DashboardHandler):
    """The dashboard's CSS and JavaScript (plain files, no build step)."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        path = STATIC / name
        if not name or name.startswith(".") or not path.is_file() or path.parent != STATIC:
            raise web.HTTPError(404, "no such file: %s", name)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=UTF-8"
        self.set_header("Content-Type", kind)
        self.set_header("Cache-Control", "no-cache")
        self.finish(path.read_bytes())


_RUN = r"(?P<run_id>[^/]+)"

HANDLERS: list[tuple[str, type[DashboardHandler]]] = [
    (r"/nbflows/?", PoolsPage),
    (r"/nbflows/pools/?", PoolsPage),
    (r"/nbflows/deployments/?", DeploymentsPage),
    (r"/nbflows/runs/?", RunsPage),
    (r"/nbflows/automations/?", AutomationsPage),
    (rf"/nbflows/runs/{_RUN}/notebook/?", RunNotebookPage),
    (rf"/nbflows/runs/{_RUN}/dag.svg", RunDagPicture),
    (rf"/nbflows/runs/{_RUN}/?", RunPage),
    (r"/nbflows/static/(?P<name>[A-Za-z0-9_.-]+)", StaticFile),
]
