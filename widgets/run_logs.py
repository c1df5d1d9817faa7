"""`run_logs(run)`: a flow run's state, elapsed time and log lines, live, inside the notebook.

A background thread follows the run with the logs long-poll (`Client.read_logs(..., wait=...)`)
and updates the widgets from there: ipywidgets sends trait changes through the kernel's comm,
which is safe from any thread, so the view keeps moving while the kernel runs other cells.

Each page of lines is one update of one HTML widget holding at most `max_lines` lines (the
last ones): `Output.append_stdout` would re-send every earlier line with each new one. A
"show all" button fetches the whole log from the server when the user asks for it.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import timezone
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import ipywidgets as widgets
from traitlets import Bool, Dict, Int, Unicode

from nbflows.client.rest import Client, get_client
from nbflows.client.transport import MAX_WAIT
from nbflows.errors import NBFlowsError, NotFound
from nbflows.presentation import format_duration, format_timestamp, parse_timestamp, state_badge
from nbflows.protocol import TERMINAL_VALUES

__all__ = [
    "RunLogs",
    "dashboard_link",
    "run_logs",
]

#: Lines shown by default; the rest stay on the server until "show all".
DEFAULT_MAX_LINES = 500
#: Lines fetched per request.
PAGE_SIZE = 1000
#: While a run is active, the long-poll returns at least this often so that the elapsed time moves.
TICK_SECONDS = 1.0
#: At most this many view updates per second: a chatty run gets its lines in batches.
MIN_UPDATE_INTERVAL = 0.25

_SOURCE_STYLES = {
    "stderr": "color: var(--jp-error-color1, #c62828)",
    "error": "color: var(--jp-error-color1, #c62828); font-weight: 600",
    "worker": "color: var(--jp-ui-font-color2, #757575); font-style: italic",
}


def dashboard_link(client: Client, *parts: str) -> str:
    """The href of a dashboard page for a link shown in the notebook.

    A server on this machine is the notebook's own server, which the kernel reaches at a local
    address the browser may not (behind a proxy or JupyterHub): its link keeps only the path,
    which includes the server's base URL. Any other server gets its full URL.
    """
    url = client.dashboard_url + "/".join(quote(p, safe="") for p in parts)
    parsed = urlsplit(url)
    if parsed.hostname in ("127.0.0.1", "localhost", "::1"):
        return urlunsplit(("", "", parsed.path, parsed.query, ""))
    return url


def run_id_of(run_or_id: Any) -> str:
    """The id of a run given as an id, a FlowRun dict, or an object with an `id`."""
    if isinstance(run_or_id, str):
        return run_or_id
    if isinstance(run_or_id, Mapping) and run_or_id.get("id"):
        return str(run_or_id["id"])
    for attr in ("id", "flow_run_id"):
        value = getattr(run_or_id, attr, None)
        if value:
            return str(value)
    raise TypeError(
        f"run_logs() needs a flow run id, a flow run dict or a run object, not {run_or_id!r}"
    )


class RunLogs(widgets.VBox):
    """Live view of one flow run: state badge, elapsed time, log lines, link to the run page.

    `state` (the state type), `run` (the latest FlowRun dict), `done`, `line_count` and `error`
    (why the run cannot be followed, empty when all is well) are traits; `lines` holds the
    messages received so far (the last `max_lines`). `wait()` blocks until the run
    is over and every line has arrived; `stop()` stops following.
    """

    state = Unicode("")
    run = Dict()
    done = Bool(False)
    line_count = Int(0)
    error = Unicode("")

    def __init__(
        self,
        run_id: str,
        client: Client | None = None,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        follow: bool = True,
        **kwargs: Any,
    ) -> None:
        self.run_id = run_id
        self.max_lines = max_lines
        self._client = client
        self._recent: deque[dict[str, Any]] = deque(maxlen=max_lines)
        self._everything: list[dict[str, Any]] | None = None  # set once "show all" was asked
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_update = 0.0

        self.header = widgets.HTML()
        self.log_view = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.show_all_button = widgets.Button(
            description="Show all lines",
            icon="list",
            tooltip="Fetch the whole log of this run from the server",
            layout=widgets.Layout(display="none", width="auto"),
        )
        self.show_all_button.on_click(lambda _: self.show_all())
        self.message = widgets.HTML()
        super().__init__([self.header, self.log_view, self.show_all_button, self.message], **kwargs)
        self._render_header()
        self._render_lines()
        if follow:
            self.start()

    # -- public --------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = get_client()
        return self._client

    @property
    def lines(self) -> list[str]:
        """The messages of the lines this widget holds, oldest first."""
        with self._lock:
            source = self._everything if self._everything is not None else self._recent
            return [str(line.get("message", "")) for line in source]

    def start(self) -> None:
        """Follow the run in a background thread (done by the constructor unless follow=False)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._follow, name=f"nbflows-run-logs-{self.run_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following the run (the view keeps what it shows)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run is over and its last lines are shown (or `timeout` s); the run."""
        self._finished.wait(timeout)
        return dict(self.run)

    def show_all(self) -> None:
        """Fetch every line of the run from the server and show them all."""
        try:
            everything = list(self._fetch_all())
        except NBFlowsError as exc:
            self._show_error(exc)
            return
        with self._lock:
            # Lines the follower received while this fetch went on.
            everything.extend(_newer_than(everything, self._recent))
            self._everything = everything
            self.line_count = max(self.line_count, len(everything))
            self._render_lines()

    def close(self) -> None:
        self.stop()
        super().close()

    # -- following -----------------------------------------------------------------------------

    def _follow(self) -> None:
        after = 0
        seen_type: str | None = None
        wait: float = 0  # the first page answers at once with what is there
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    page = self.client.read_logs(
                        self.run_id,
                        after=after,
                        limit=PAGE_SIZE,
                        wait=wait or None,
                        state=seen_type,
                    )
                except NotFound as exc:
                    self._show_error(exc)
                    return
                except NBFlowsError as exc:
                    # The server may be restarting: say so and try again, more slowly each time.
                    failures += 1
                    self._show_error(exc, retrying=True)
                    self._stop.wait(min(2.0 * failures, 30.0))
                    continue
                if failures:
                    failures = 0
                    self.error = self.message.value = ""
                items = page.get("items") or []
                after = int(page.get("next_after", after))
                run = page.get("flow_run") or {}
                self._add_page(items, run)
                kind = str((run.get("state") or {}).get("type") or "")
                more = len(items) >= PAGE_SIZE
                if kind in TERMINAL_VALUES and not more:
                    # Lines read just before the run ended may not have been all of them; only
                    # a page asked for once the run was known to be over is sure to be the last.
                    if seen_type in TERMINAL_VALUES:
                        return
                    more = True
                seen_type = kind
                wait = 0 if more else TICK_SECONDS if kind == "RUNNING" else MAX_WAIT
                if items:
                    # Let lines accumulate on the server: one update carries many of them.
                    self._stop.wait(
                        max(0.0, MIN_UPDATE_INTERVAL - (time.monotonic() - self._last_update))
                    )
        finally:
            self.done = True
            self._finished.set()

    def _fetch_all(self) -> Iterable[dict[str, Any]]:
        after = 0
        while True:
            page = self.client.read_logs(self.run_id, after=after, limit=10_000)
            items = page.get("items") or []
            yield from items
            if not items:
                return
            after = int(page.get("next_after", after))

    def _add_page(self, items: list[dict[str, Any]], run: dict[str, Any]) -> None:
        with self._lock:
            self._recent.extend(items)
            if self._everything is not None:
                self._everything.extend(_newer_than(self._everything, items))
            if items:
                self.line_count += len(items)
                self._render_lines()
            if run:
                self.run = run
                self.state = str((run.get("state") or {}).get("type") or "")
            self._render_header()
            self._last_update = time.monotonic()

    # -- rendering -----------------------------------------------------------------------------

    def _page_url(self) -> str | None:
        try:
            return dashboard_link(self.client, "runs", self.run_id)
        except NBFlowsError:
            return None

    def _render_header(self) -> None:
        run = self.run
        if not run:
            self.header.value = f"<b>flow run</b> <code>{html.escape(self.run_id)}</code> …"
            return
        state = run.get("state") or {}
        parts = [state_badge(state), f"<b>{html.escape(str(run.get('name') or self.run_id))}</b>"]
        if run.get("deployment_name"):
            parts.append(html.escape(str(run["deployment_name"])))
        if run.get("start_time"):
            label = "took" if state.get("type") in TERMINAL_VALUES else "elapsed"
            parts.append(f"{label} {format_duration(run.get('duration'))}")
        elif state.get("type") not in TERMINAL_VALUES:
            parts.append(f"expected {format_timestamp(run.get('expected_start_time'))}")
        url = self._page_url()
        if url:
            label = "executed notebook ↗" if run.get("has_notebook") else "run page ↗"
            parts.append(f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{label}</a>')
        text = " · ".join(parts)
        message = state.get("message")
        if message and state.get("type") in TERMINAL_VALUES | {"CANCELLING"}:
            first = str(message).splitlines()[0] if str(message).strip() else ""
            if first:
                text += f'<div style="margin-top:2px">{html.escape(first)}</div>'
        text += outputs_html(run.get("outputs"))
        self.header.value = text

    def _render_lines(self) -> None:
        with self._lock:
            shown = list(self._everything if self._everything is not None else self._recent)
            hidden = self.line_count - len(shown)
            if not shown:
                body = '<span style="opacity:0.6">no log lines yet</span>'
            else:
                body = "".join(_line_html(line) for line in shown)
            note = ""
            if hidden > 0:
                note = (
                    f'<div style="opacity:0.6">… {hidden} earlier line{"s" if hidden != 1 else ""}'
                    " not shown</div>"
                )
            # column-reverse keeps the scroll position at the newest line as lines arrive.
            self.log_view.value = (
                '<div class="nbflows-logs" style="max-height:22em;overflow:auto;display:flex;'
                "flex-direction:column-reverse;background:var(--jp-layout-color2,#f5f5f5);"
                "border-radius:4px;padding:4px 8px;"
                "font-family:var(--jp-code-font-family,monospace);"
                f'font-size:12px;line-height:1.4"><div>{note}{body}</div></div>'
            )
            show_button = hidden > 0 and self._everything is None
            self.show_all_button.description = f"Show all {self.line_count} lines"
            self.show_all_button.layout.display = "" if show_button else "none"

    def _show_error(self, exc: NBFlowsError, *, retrying: bool = False) -> None:
        suffix = " (retrying)" if retrying else ""
        self.error = exc.message
        self.message.value = (
            '<span style="color:var(--jp-error-color1,#c62828)">'
            f"{html.escape(exc.message)}{suffix}</span>"
        )


def _newer_than(
    held: list[dict[str, Any]], lines: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The `lines` after the last one `held` (line ids grow), so none is shown twice."""
    last = int(held[-1].get("id") or 0) if held else 0
    return [line for line in lines if int(line.get("id") or 0) > last]


def outputs_html(outputs: Mapping[str, Any] | None) -> str:
    """A run's outputs (`nbflows.output(name, value)`) as one line of `name = value` pairs."""
    if not outputs:
        return ""
    pairs = " · ".join(
        f"<code>{html.escape(str(name))}</code> = <code>{html.escape(short_json(value))}</code>"
        for name, value in outputs.items()
    )
    return f'<div class="nbflows-outputs" style="margin-top:2px">outputs: {pairs}</div>'


def short_json(value: Any, limit: int = 120) -> str:
    import json

    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_html(line: Mapping[str, Any]) -> str:
    moment = parse_timestamp(line.get("timestamp"))
    stamp = moment.astimezone(timezone.utc).strftime("%H:%M:%S") if moment else ""
    style = _SOURCE_STYLES.get(str(line.get("source") or ""), "")
    if not style and int(line.get("level") or 20) >= 40:
        style = _SOURCE_STYLES["stderr"]
    message = html.escape(str(line.get("message", "")).rstrip("\n"))
    return (
        f'<div style="white-space:pre-wrap;{style}">'
        f'<span style="opacity:0.5;user-select:none">{stamp} </span>{message}</div>'
    )


def run_logs(
    run_or_id: Any, client: Client | None = None, *, max_lines: int = DEFAULT_MAX_LINES
) -> RunLogs:
    """A live view of a flow run's state and log lines (shown when it is a cell's last value).

    `run_or_id` is a run id, a FlowRun dict (as the client returns) or a run object with an
    `id`. The view updates from a background thread until the run is over, so it keeps moving
    while other cells run. It shows the last `max_lines` lines; "show all" fetches the rest.
    """
    from nbflows.client.context import current_context

    run_id = run_id_of(run_or_id)
    if current_context().headless:
        # A worker runs this notebook: nobody watches its widgets, so do not poll the server.
        view = RunLogs(run_id, client, max_lines=max_lines, follow=False)
        view.message.value = "nbflows: run logs are not followed while a worker runs this notebook"
        return view
    return RunLogs(run_id, client, max_lines=max_lines)
