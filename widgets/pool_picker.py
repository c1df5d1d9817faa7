"""`pool_picker()`: a dropdown of the server's work pools, with what a user needs to choose one.

Each pool shows its type, its status (ready / paused / no worker / not served, with why), its
queues and its running runs. `.value` is the chosen pool's name, so `work_pool_name=picker.value` reads naturally.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
from traitlets import List, TraitError, Unicode, observe, validate

from nbflows.client.rest import Client, get_client
from nbflows.errors import NBFlowsError
from nbflows.widgets.saved_view import SavedView

__all__ = ["PoolPicker", "pool_picker", "pool_status"]

_STATUS = {
    "READY": ("ready", "#2e7d32"),
    "PAUSED": ("paused", "#f9a825"),
    "NOT_READY": ("no worker", "#c62828"),
}


def pool_status(pool: dict[str, Any]) -> tuple[str, str]:
    """(words, colour) of a pool's status: ready, paused, no worker, or not served (a worker
    is there but cannot execute its runs: `status_reason` says why)."""
    if pool.get("status") == "NOT_READY" and pool.get("status_reason"):
        return ("not served", "#c62828")
    return _STATUS.get(
        str(pool.get("status")), (str(pool.get("status") or "unknown").lower(), "#757575")
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _option_label(pool: dict[str, Any]) -> str:
    words, _ = pool_status(pool)
    return f"{pool['name']} — {pool.get('type')}, {words}"


def pool_info_html(pool: dict[str, Any]) -> str:
    """One line about a pool: type, status, queues, running runs, workers, limit."""
    words, colour = pool_status(pool)
    queues = pool.get("queues") or []
    queue_names = ", ".join(html.escape(str(q.get("name"))) for q in queues)
    parts = [
        f"<b>{html.escape(str(pool['name']))}</b>",
        html.escape(str(pool.get("type"))),
        f'<span style="color:{colour};font-weight:600">● {words}</span>',
        f"{_plural(len(queues), 'queue')} ({queue_names})" if queues else "no queues",
        f"{int(pool.get('running_runs') or 0)} running",
        f"{_plural(int(pool.get('workers_online') or 0), 'worker')} online",
    ]
    if pool.get("concurrency_limit") is not None:
        parts.append(f"limit {pool['concurrency_limit']}")
    text = " · ".join(parts)
    if pool.get("status_reason"):
        text += f'<div style="color:#c62828">{html.escape(str(pool["status_reason"]))}</div>'
    if pool.get("description"):
        text += f'<div style="opacity:0.7">{html.escape(str(pool["description"]))}</div>'
    return text


class PoolPicker(SavedView, widgets.VBox):
    """Dropdown of work pools + an info line about the chosen one + a refresh button.

    The first choice is the first ready pool (one with a worker online), else the first pool;
    a refresh keeps the choice while that pool exists.

    Traits: `value` (the chosen pool's name, None when there is none), `pools` (the pools
    offered, as the API returns them), `error` (why there are none: no server, refused...).
    """

    value = Unicode(None, allow_none=True)
    pools: List[dict[str, Any]] = List()
    error = Unicode("")

    def __init__(
        self,
        type: str | None = None,
        client: Client | None = None,
        *,
        load: bool = True,
        **kwargs: Any,
    ) -> None:
        self.pool_type = type
        self._client = client
        self.dropdown = widgets.Dropdown(
            description="Work pool",
            options=[],
            layout=widgets.Layout(width="auto", min_width="24em"),
        )
        self.refresh_button = widgets.Button(
            icon="refresh", tooltip="Reload the work pools", layout=widgets.Layout(width="2.6em")
        )
        self.info = widgets.HTML()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.dropdown.observe(self._on_dropdown, names="value")
        super().__init__([widgets.HBox([self.dropdown, self.refresh_button]), self.info], **kwargs)
        if load:
            self.refresh()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = get_client()
        return self._client

    @property
    def pool(self) -> dict[str, Any] | None:
        """The chosen pool (as the API returns it), or None."""
        return next((p for p in self.pools if p["name"] == self.value), None)

    def refresh(self) -> None:
        """Reload the pools from the server, keeping the choice when that pool still exists."""
        try:
            pools = self.client.list_work_pools()
        except NBFlowsError as exc:
            self._set_pools([], error=exc.message)
            return
        if self.pool_type:
            pools = [p for p in pools if p.get("type") == self.pool_type]
        self._set_pools(pools)

    # -- internals -----------------------------------------------------------------------------

    def _set_pools(self, pools: list[dict[str, Any]], error: str = "") -> None:
        previous = self.value
        self.error = error
        self.pools = pools
        names = [p["name"] for p in pools]
        self.dropdown.options = [(_option_label(p), p["name"]) for p in pools]
        self.dropdown.disabled = not pools
        if previous not in names:
            # A pool that can run something now is the better first guess.
            ready = [p["name"] for p in pools if p.get("status") == "READY"]
            previous = (ready or names or [None])[0]
        self.value = previous
        self.dropdown.value = self.value
        self._render_info()

    @validate("value")
    def _check_value(self, proposal: Any) -> Any:
        name = proposal["value"]
        names = [p["name"] for p in self.pools]
        if name is not None and name not in names:
            offered = ", ".join(names) or "none"
            raise TraitError(f"no work pool {name!r} here; pools: {offered}")
        return name

    @observe("value")
    def _on_value(self, change: dict[str, Any]) -> None:
        if self.dropdown.value != change["new"]:
            self.dropdown.value = change["new"]
        self._render_info()

    def _on_dropdown(self, change: dict[str, Any]) -> None:
        if change["new"] != self.value and change["new"] in [p["name"] for p in self.pools]:
            self.value = change["new"]

    def _render_info(self) -> None:
        if self.error:
            self.info.value = (
                '<span style="color:var(--jp-error-color1,#c62828)">'
                f"⚠ {html.escape(self.error)}</span>"
            )
        elif not self.pools:
            kind = f"{self.pool_type} " if self.pool_type else ""
            example = self.pool_type or "process"
            self.info.value = (
                f"No {kind}work pools yet. Create one with "
                f"<code>nbflows work-pool create NAME --type {html.escape(example)}</code>, "
                "then refresh."
            )
        else:
            pool = self.pool
            self.info.value = pool_info_html(pool) if pool else ""


def pool_picker(type: str | None = None, client: Client | None = None) -> PoolPicker:
    """A dropdown of the server's work pools (only pools of `type` when given).

    `.value` is the chosen pool's name. When no server answers, the widget says so (and how
    to start one) instead of raising; the refresh button tries again.
    """
    from nbflows.client.context import current_context

    if current_context().headless:
        # A worker runs this notebook: deploy calls are no-ops there, so nobody needs the pools.
        picker = PoolPicker(type, client, load=False)
        picker.info.value = "nbflows: work pools are not listed while a worker runs this notebook"
        return picker
    return PoolPicker(type, client)
