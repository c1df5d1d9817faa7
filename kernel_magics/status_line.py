"""The status line of a `%%flow` cell: state, duration, attempt and a link to the run.

Displayed when an attempt starts and updated when it ends, as one output with a display id.
The bundle has the MIME type JupyterLab's nbflows extension renders (live, with a link to the
run in its Flows panel) and a text/plain line for every other front end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbflows.kernel_magics.reporting import FlowRunRecord

#: How long the last update waits for the server's id of the run (its link), at most (s).
ID_WAIT = 2.0

MIME_TYPE = "application/vnd.nbflows.run+json"


class RunStatusLine:
    """One cell run's status line; `show` displays it first, then updates it in place."""

    def __init__(self, flush: Callable[[float], object] | None = None) -> None:
        self._handle: Any = None
        #: Waits (up to the seconds given) until the reporter has told the server everything.
        self._flush = flush

    def show(self, run: FlowRunRecord, state: str, message: str | None = None) -> None:
        from IPython.display import display

        if run.id is None and state != "RUNNING" and self._flush is not None:
            # The run is created on the server in the background: a short run can end before
            # its id is known, and the line's link to the run needs it.
            self._flush(ID_WAIT)
        bundle = status_bundle(run, state, message)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


_STATE_NAMES = {
    "RUNNING": "Running",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELLED": "Cancelled",
    "SCHEDULED": "AwaitingRetry",
}


def status_bundle(run: FlowRunRecord, state: str, message: str | None = None) -> dict[str, Any]:
    """The display bundle of `run` in `state` (a state type, e.g. COMPLETED)."""
    duration = None
    if run.start_time is not None and run.end_time is not None:
        duration = round(run.end_time - run.start_time, 3)
    name = _STATE_NAMES.get(state, state.title())
    data = {
        # The server's id, when the reporter has it already (it is created in the background).
        "id": run.id,
        "flow_name": run.flow_name,
        "state": {"type": state, "name": name, "message": message},
        "attempt": run.attempt,
        "duration": duration,
    }
    text = f"flow {run.flow_name}: {name}"
    if duration is not None:
        text += f" in {duration:.2f} s"
    text += f" (attempt {run.attempt})"
    if run.id:
        text += f", run id {run.id}"
    return {MIME_TYPE: data, "text/plain": text}
