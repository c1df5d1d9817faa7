"""The client's flow run calls: create, read, list, state, outputs, logs, notebooks, artifacts, watch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from nbflows.client.flow_run import FlowRun, run_state_type
from nbflows.client.transport import MAX_WAIT, Transport, drop_none, segment
from nbflows.protocol import TERMINAL_VALUES

if TYPE_CHECKING:
    from nbflows.client.rest import Client


class FlowRunsAPI(Transport):
    """The client's flow run calls: create, read, list, state, outputs, logs, notebooks, artifacts, watch."""

    # -- flow runs -----------------------------------------------------------------------------

    def create_flow_run(self, flow_name: str, **fields: Any) -> dict[str, Any]:
        """An interactive flow run (`%%flow`); fields as in `POST flow_runs`."""
        return cast(
            dict[str, Any], self._post("flow_runs", {"flow_name": flow_name, **drop_none(fields)})
        )

    def read_flow_run(self, id: str) -> FlowRun:
        """The run (a dict of its fields; `.artifacts`, `.read_artifact(name)`, `.export()`)."""
        # Always a `Client` at run time: this class is one of its parts.
        return FlowRun(self._get(f"flow_runs/{segment(id)}"), client=cast("Client", self))

    def list_flow_runs(
        self,
        state: str | Iterable[str] | None = None,
        deployment_id: str | None = None,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Flow runs, newest first; `state` is one state type or several."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        return cast(
            list[dict[str, Any]],
            self._get(
                "flow_runs",
                state=state or None,
                deployment_id=deployment_id,
                flow_name=flow_name,
                work_pool_name=work_pool_name,
                parent_run_id=parent_run_id,
                limit=limit,
                offset=offset,
            ),
        )

    def set_flow_run_state(
        self,
        id: str,
        type: str,
        name: str | None = None,
        message: str | None = None,
        retry: bool = False,
        worker: str | None = None,
        fence: int | None = None,
    ) -> dict[str, Any]:
        """Change a run's state; a `worker` reporting (with the `fence` its claim returned) is
        refused (Conflict) once it no longer holds the run (it was crashed and retried
        elsewhere, say)."""
        body = drop_none(
            {"type": type, "name": name, "message": message, "worker": worker, "fence": fence}
        )
        if retry:
            body["retry"] = True
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/set_state", body))

    def end_flow_run(
        self,
        id: str,
        type: str,
        message: str | None = None,
        *,
        worker: str,
        fence: int | None,
        logs: Iterable[Mapping[str, Any]] = (),
        notebook: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A worker's end of an attempt in one request: its last log `logs`, its executed
        `notebook`, then its end state; all refused (Conflict) once it no longer holds the run,
        and then nothing of it is kept."""
        state = drop_none({"type": type, "message": message, "worker": worker, "fence": fence})
        body: dict[str, Any] = {"logs": [dict(line) for line in logs], "state": state}
        if notebook is not None:
            body["notebook"] = dict(notebook)
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/end", body))

    def heartbeat_flow_run(self, id: str, heartbeat_interval: float) -> dict[str, Any]:
        """A beat for a run created with `heartbeat_interval` (a kernel's `%%flow` run)."""
        body = {"heartbeat_interval": heartbeat_interval}
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/heartbeat", body))

    def record_output(self, id: str, name: str, value: Any) -> dict[str, Any]:
        """Record output `name` of run `id` (what `nbflows.output(name, value)` sends)."""
        body = {"name": name, "value": value}
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/outputs", body))

    def repair_flow_run(self, id: str) -> dict[str, Any]:
        """Re-run a failed pipeline run from its failed steps, reusing the steps that succeeded."""
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/repair"))

    def read_pipeline_run(self, id: str) -> dict[str, Any]:
        """A pipeline run's DAG: `{"flow_run", "steps", "edges", "step_runs"}`."""
        return cast(dict[str, Any], self._get(f"flow_runs/{segment(id)}/pipeline"))

    def cancel_flow_run(self, id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/cancel"))

    def read_flow_run_notifications(self, id: str) -> list[dict[str, Any]]:
        """What automations did for the run: target (masked), status, attempts, last error."""
        return cast(list[dict[str, Any]], self._get(f"flow_runs/{segment(id)}/notifications"))

    def write_logs(self, id: str, lines: Iterable[str | Mapping[str, Any]]) -> dict[str, Any]:
        """Append log lines (strings or LogLine-shaped dicts) to a run."""
        items = [{"message": line} if isinstance(line, str) else dict(line) for line in lines]
        return cast(dict[str, Any], self._post(f"flow_runs/{segment(id)}/logs", items))

    def read_logs(
        self,
        id: str,
        after: int = 0,
        limit: int = 1000,
        wait: float | None = None,
        state: str | None = None,
    ) -> dict[str, Any]:
        """Log lines after `after`, with the run: `{"items", "next_after", "flow_run"}`.

        With `wait`, the server holds the request until there are new lines, the run's state type
        differs from `state`, or the run is terminal (at most 30 s).
        """
        return cast(
            dict[str, Any],
            self.request(
                "GET",
                f"flow_runs/{segment(id)}/logs",
                params={"after": after, "limit": limit, "wait": wait or None, "state": state},
                timeout=self._long_timeout(wait),
            ),
        )

    def read_flow_run_notebook(self, id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"flow_runs/{segment(id)}/notebook"))

    def write_flow_run_notebook(
        self,
        id: str,
        nb: Mapping[str, Any],
        worker: str | None = None,
        fence: int | None = None,
    ) -> Any:
        """Store a run's executed notebook; a `worker`'s only while it holds the run (`fence`)."""
        params = {"worker": worker, "fence": fence}
        return self.request(
            "PUT", f"flow_runs/{segment(id)}/notebook", json_body=dict(nb), params=params
        )

    def list_flow_run_artifacts(self, id: str) -> list[dict[str, Any]]:
        """The artifacts of a run: `{"name", "size", "sha256", "created"}` each."""
        return cast(list[dict[str, Any]], self._get(f"flow_runs/{segment(id)}/artifacts"))

    def read_flow_run_artifact(self, id: str, name: str) -> bytes:
        return cast(
            bytes,
            self.request("GET", f"flow_runs/{segment(id)}/artifacts/{segment(name)}", raw=True),
        )

    def write_flow_run_artifact(
        self,
        id: str,
        name: str,
        data: bytes,
        worker: str | None = None,
        fence: int | None = None,
    ) -> dict[str, Any]:
        """Store a file as an artifact of a run; a `worker`'s only while it holds the run."""
        return cast(
            dict[str, Any],
            self.request(
                "PUT",
                f"flow_runs/{segment(id)}/artifacts/{segment(name)}",
                content=data,
                params={"worker": worker, "fence": fence},
            ),
        )

    def write_flow_run_export(
        self, id: str, to: str, data: bytes, worker: str, fence: int | None = None
    ) -> dict[str, Any]:
        """Store the run's notebook exported as `to` (the worker holding the run, after it)."""
        path = f"flow_runs/{segment(id)}/exports/{segment(to)}"
        params = {"worker": worker, "fence": fence}
        return cast(dict[str, Any], self.request("PUT", path, content=data, params=params))

    def export_flow_run_notebook(self, id: str, to: str = "html") -> bytes:
        """The executed notebook as `to` (html, or pdf where the server has Chromium)."""
        path = f"flow_runs/{segment(id)}/exports/{segment(to)}"
        return cast(bytes, self.request("GET", path, raw=True, timeout=300))

    def prune_flow_runs(
        self,
        older_than_days: float | None = None,
        keep_last: int | None = None,
        deployment: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Remove finished runs (with their logs, notebooks, artifacts) that are older than
        `older_than_days` and/or beyond the newest `keep_last` per deployment."""
        body = drop_none(
            {
                "older_than_days": older_than_days,
                "keep_last": keep_last,
                "deployment": deployment,
                "dry_run": dry_run,
            }
        )
        return cast(
            dict[str, Any], self.request("POST", "flow_runs/prune", json_body=body, timeout=600)
        )

    def watch_flow_run(
        self,
        id: str,
        on_log: Callable[[dict[str, Any]], Any] | None = None,
        on_state: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Follow a run until it is terminal; return the final run.

        `on_log(line)` is called for every log line in order, `on_state(run)` once with the
        current state and again at every state change (type or name). Uses the logs long-poll,
        so a change is seen as soon as the server has it. With `timeout` (seconds), returns the
        run as it is once that much time has passed, terminal or not.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        after = 0
        seen: tuple[str, str] | None = None
        run: dict[str, Any] | None = None
        wait: float = 0  # the first page answers at once with the current state
        page_size = 1000
        while True:
            state_type = None if run is None else run_state_type(run)
            page = self.read_logs(
                id, after=after, limit=page_size, wait=wait or None, state=state_type
            )
            for line in page.get("items") or []:
                if on_log is not None:
                    on_log(line)
            after = int(page.get("next_after", after))
            run = cast(dict[str, Any], page.get("flow_run") or self.read_flow_run(id))
            current = (run_state_type(run), str((run.get("state") or {}).get("name") or ""))
            if current != seen:
                seen = current
                if on_state is not None:
                    on_state(run)
            # A full page means more lines are waiting: fetch them before anything else.
            more = len(page.get("items") or []) >= page_size
            if current[0] in TERMINAL_VALUES and not more:
                # The server reads a page's run before its lines, and a worker's lines are
                # stored before (or with) its run's end: a terminal run's page holds them all.
                return run
            if more:
                wait = 0
                continue
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return run
                wait = min(MAX_WAIT, remaining)
            else:
                wait = MAX_WAIT
