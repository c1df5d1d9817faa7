"""Getting what a run prints to the API while it runs: batched log lines and child flow runs.

`LogShipper` owns one background thread that sends the buffered lines of every run the worker
executes, one request per run and batch (every `FLUSH_INTERVAL` seconds, or as soon as a run has
`BATCH_LINES` lines waiting), never one request per line. `RunReporter` is what a worker's `run()`
is given for one flow run: it turns kernel output into log lines and relays the run's
*events*. `ServerLink` tells the person watching the worker, in one line each, when the server
is lost and when it is found again.

While the server cannot be reached, lines wait (in order, up to `MAX_BUFFERED` per run) and are
sent when it is back. Each line carries the claim's fencing token and its number (`fence`,
`seq`), so a batch sent again after a request whose answer was lost is stored once.

Events (the headless `%%flow` protocol)
---------------------------------------
A kernel run by a worker cannot be expected to reach the server (in a container it has no
network path to it), so `%%flow` cells inside a whole-notebook run report through the output
stream: display data whose bundle holds `EVENT_MIME_TYPE` with one JSON object, as
`nbflows.kernel_magics.reporting.HeadlessReporter` sends them. Per attempt of a child flow:

* ``{"event": "flow_run_started", "run_key", "flow_name", "attempt", "parent_run_key"?,
  "parameters"?, "tags"?, "max_retries"?}`` — attempt 1 creates the child flow run (a child of
  the enclosing child named by `parent_run_key`, else of the notebook's run); a later attempt
  moves it to RUNNING/Retrying.
* ``{"event": "flow_run_finished", "run_key", "state", "message"?, "retrying"?}`` — the attempt
  ended in `state`; with `retrying` the run goes to SCHEDULED/AwaitingRetry for the next one.

And ``{"event": "output", "run_key": null | key, "name", "value"}`` — `nbflows.output(name,
value)`: recorded on the child run `run_key`, or on the notebook's run when it is null.

Every line the kernel prints while a child is running goes to that child's log *and* to the
notebook run's log. Children still running when the notebook run ends are finished with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from nbflows.client.api_errors import APIError, NoServerError
from nbflows.client.rest import Client
from nbflows.errors import NBFlowsError, NotFound
from nbflows.protocol import TERMINAL_VALUES
from nbflows.services.secrets import Masker

__all__ = [
    "BATCH_LINES",
    "FLUSH_INTERVAL",
    "LogShipper",
    "RunLog",
    "RunReporter",
    "ServerLink",
    "unreachable",
]

log = logging.getLogger(__name__)

#: The MIME type of the outputs that carry run events (see the module docstring).
#: Seconds between two sends of a run's buffered lines.
FLUSH_INTERVAL = 0.1
#: A run with this many lines waiting is sent at once, without waiting for the interval.
BATCH_LINES = 200
#: Lines kept for a run while the server cannot be reached; older ones are dropped beyond it.
MAX_BUFFERED = 20_000

#: Log level of each output stream (stderr is shown as a warning, as `%%flow` does).
_STREAM_LEVELS = {
    "stdout": logging.INFO,
    "display": logging.INFO,
    "stderr": logging.WARNING,
    "error": logging.ERROR,
}
#: Log source of each output stream (the API knows stdout, stderr, logging, worker, error).
_STREAM_SOURCES = {"stdout": "stdout", "display": "stdout", "stderr": "stderr", "error": "error"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the server is away (down, restarting, refusing the token), so that
    the request is worth sending again later; a domain error (404, 409, 422) is an answer."""
    if isinstance(exc, NoServerError):
        return True
    if isinstance(exc, APIError):
        status = exc.status_code
        return status is None or status in (401, 403) or status >= 500
    return False


class ServerLink:
    """Whether the worker reaches its server, said in one line when lost and one when found.

    Every part of the worker that talks to the server reports `ok()` or `failed(exc)`; only the
    changes are said, never one line per retry.
    """

    def __init__(self, client: Client, say: Callable[[str], None]) -> None:
        self.client = client
        self._say = say
        self._lock = threading.Lock()
        self._lost_at: float | None = None
        self._generation = client.generation

    @property
    def lost(self) -> bool:
        return self._lost_at is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._lost_at is not None:
                return
            self._lost_at = time.monotonic()
        self._say(
            f"lost the server at {self.client.api_url}: {str(exc).rstrip('.')}; trying again "
            "with backoff "
            "(running runs go on, their logs and results wait for the server)"
        )

    def ok(self) -> None:
        if self._lost_at is None and self._generation == self.client.generation:
            return
        with self._lock:
            lost_at, self._lost_at = self._lost_at, None
            moved = self._generation != self.client.generation
            self._generation = self.client.generation
        if lost_at is None and not moved:
            return
        how = " (it restarted with a new token)" if moved else ""
        after = f" after {time.monotonic() - lost_at:.0f} s" if lost_at is not None else ""
        self._say(f"found the server again at {self.client.api_url}{after}{how}")


class OutputLineLike(Protocol):
    """One line of kernel output (`nbflows.execution.engine.OutputLine` is one)."""

    @property
    def time(self) -> datetime: ...
    @property
    def stream(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def cell_index(self) -> int | None: ...


class RunLog:
    """The log lines of one run on their way to the server; `add` is safe from any thread.

    With `live=False` the lines are held until `close()` (job variable `stream_output: false`).
    Lines are numbered in the order they are added; `fence` is the claim's fencing token.
    """

    def __init__(
        self,
        shipper: LogShipper,
        run_id: str,
        *,
        live: bool = True,
        fence: int | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.live = live
        self.fence = fence
        #: Hides the run's secret values in each line before it is kept.
        self.mask = mask
        self._shipper = shipper
        self._lines: list[dict[str, Any]] = []
        self._seq = 0
        self._dropped = 0
        self._lock = threading.Lock()
        # Sends of one run are serialised so that its lines reach the server in order.
        self._send_lock = threading.Lock()
        #: Set once the server said the run's log is full: later lines are not sent at all.
        self.truncated = False
        self.closed = False
        # While the server cannot be reached, the shipper waits longer and longer to try again.
        self._failures = 0
        self._retry_at = 0.0

    def add(self, line: dict[str, Any]) -> None:
        """Queue one LogLine-shaped dict (`message`, `level`, `source`, `timestamp`, ...)."""
        with self._lock:
            if self.truncated or self.closed:
                return
            line = {**line, "fence": self.fence, "seq": self._seq}
            if self.mask is not None:
                line["message"] = self.mask(str(line.get("message", "")))
            self._seq += 1
            self._lines.append(line)
            if len(self._lines) > MAX_BUFFERED:
                del self._lines[0]
                self._dropped += 1
            full = len(self._lines) >= BATCH_LINES
        if full and self.live:
            self._shipper.wake()

    def due(self) -> bool:
        """Whether the shipper should send this run's lines now."""
        with self._lock:
            waiting = bool(self._lines)
        return self.live and waiting and time.monotonic() >= self._retry_at

    def flush(self) -> bool:
        """Send what is buffered now, on the calling thread; False if the server could not be
        reached (the lines wait for the next try)."""
        with self._send_lock:
            with self._lock:
                lines, self._lines = self._lines, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                lines.insert(
                    0,
                    _worker_line(
                        f"{dropped} log lines were dropped while the server could not be reached "
                        f"(at most {MAX_BUFFERED} wait per run)",
                        logging.WARNING,
                    ),
                )
            for start in range(0, len(lines), BATCH_LINES * 5):
                chunk = lines[start : start + BATCH_LINES * 5]
                try:
                    answer = self._shipper.client.write_logs(self.run_id, chunk)
                except NotFound:  # the run was deleted: nothing more to send
                    self._stop_sending()
                    return True
                except NBFlowsError as exc:
                    if not unreachable(exc):  # refused: sending them again changes nothing
                        log.warning("log lines of run %s were refused: %s", self.run_id, exc)
                        continue
                    self._shipper.link_failed(exc)
                    self._failures += 1
                    self._retry_at = time.monotonic() + min(0.5 * 2**self._failures, 5.0)
                    with self._lock:  # keep them (in order) for the next try
                        self._lines[:0] = lines[start:]
                        excess = max(len(self._lines) - MAX_BUFFERED, 0)
                        del self._lines[:excess]
                        self._dropped += excess
                    return False
                self._failures = 0
                self._shipper.link_ok()
                if answer and answer.get("truncated"):
                    self._stop_sending()
                    return True
        return True

    def close(self, give_up: threading.Event | None = None) -> bool:
        """Send the remaining lines and stop; while the server is away, wait for it (until
        `give_up` is set). False if lines were left unsent."""
        self._shipper.forget(self)
        stop = give_up or threading.Event()
        sent = self.flush()
        delay = 0.2
        while not sent and not stop.wait(delay):
            delay = min(delay * 2, 5.0)
            sent = self.flush()
        with self._lock:
            self.closed = True
            self._lines = []
        return sent

    def close_with(self, send: Callable[[list[dict[str, Any]]], bool]) -> bool:
        """Stop, handing the lines still waiting to `send(lines)` (the worker's end report
        carries them); False, with the lines still waiting, when `send` did not take them or
        lines were dropped (then `close()` sends them the usual way)."""
        self._shipper.forget(self)
        with self._send_lock:
            with self._lock:
                if self._dropped or self.truncated:
                    return False
                lines = list(self._lines)
            if not send(lines):
                return False
            with self._lock:
                self.closed = True
                self._lines = []
        return True

    def _stop_sending(self) -> None:
        with self._lock:
            self.truncated = True
            self._lines = []


class LogShipper:
    """One background thread that sends the buffered lines of every open `RunLog`."""

    def __init__(
        self,
        client: Client,
        interval: float = FLUSH_INTERVAL,
        link: ServerLink | None = None,
        give_up: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.link = link
        #: Set when the worker must exit now: closing logs stops waiting for the server.
        self.give_up = give_up or threading.Event()
        self._logs: dict[int, RunLog] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="nbflows-log-shipper", daemon=True)
        self._thread.start()

    def open(
        self,
        run_id: str,
        *,
        live: bool = True,
        fence: int | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> RunLog:
        run_log = RunLog(self, run_id, live=live, fence=fence, mask=mask)
        with self._lock:
            self._logs[id(run_log)] = run_log
        return run_log

    def forget(self, run_log: RunLog) -> None:
        with self._lock:
            self._logs.pop(id(run_log), None)

    def wake(self) -> None:
        self._wake.set()

    def link_failed(self, exc: BaseException) -> None:
        if self.link is not None:
            self.link.failed(exc)

    def link_ok(self) -> None:
        if self.link is not None:
            self.link.ok()

    def close(self) -> None:
        """Send everything still buffered (until `give_up` is set) and stop the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        for run_log in self._open_logs():
            run_log.close(self.give_up)

    def _open_logs(self) -> list[RunLog]:
        with self._lock:
            return list(self._logs.values())

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            for run_log in self._open_logs():
                if run_log.due():
                    run_log.flush()


def _worker_line(
    message: str, level: int = logging.INFO, cell_index: int | None = None, source: str = "worker"
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "timestamp": _now(),
        "level": level,
        "message": message,
        "source": source,
    }
    if cell_index is not None:
        line["cell_index"] = cell_index
    return line


class _Child:
    def __init__(self, run_id: str, run_log: RunLog, flow_name: str) -> None:
        self.run_id = run_id
        self.log = run_log
        self.flow_name = flow_name


class RunReporter:
    """Reports one flow run while a worker executes it: its log lines and its child flow runs.

    `output(line)` takes kernel output lines, `event(data, cell_index)` the run's events,
    `log(message)` the worker's own messages about the run. Call `close(state)` when the run is
    over: children still open end with it, and every buffered line is sent before it returns.
    """

    def __init__(
        self,
        shipper: LogShipper,
        run_id: str,
        *,
        live: bool = True,
        fence: int | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.run_id = run_id
        self._shipper = shipper
        self.client = shipper.client
        #: The run's secret values, hidden in what is reported about it and its children.
        self.masker = masker or Masker(())
        self._mask = self.masker.text if self.masker else None
        self._log = shipper.open(run_id, live=live, fence=fence, mask=self._mask)
        self._live = live
        self._children: dict[str, _Child] = {}
        #: Keys of the open children, innermost last: printed lines go to the innermost one.
        self._open: list[str] = []
        self._lock = threading.Lock()

    # -- log lines ------------------------------------------------------------------------------

    def log(
        self,
        message: str,
        level: int = logging.INFO,
        *,
        cell_index: int | None = None,
        source: str = "worker",
    ) -> None:
        """A message of the worker about this run (several lines become several log lines)."""
        for text in message.splitlines() or [""]:
            self._log.add(_worker_line(text, level, cell_index, source))

    def output(self, line: OutputLineLike) -> None:
        """One line the kernel printed; also goes to the innermost open child flow run."""
        entry: dict[str, Any] = {
            "timestamp": line.time.isoformat(),
            "level": _STREAM_LEVELS.get(line.stream, logging.INFO),
            "message": line.text,
            "source": _STREAM_SOURCES.get(line.stream, "stdout"),
        }
        if line.cell_index is not None:
            entry["cell_index"] = line.cell_index
        self._log.add(entry)
        with self._lock:
            child = self._children.get(self._open[-1]) if self._open else None
        if child is not None:
            child.log.add(dict(entry))

    # -- events ---------------------------------------------------------------------------------

    def event(self, data: Any, cell_index: int | None = None) -> None:
        """One event output of the run (see the module docstring); bad events are logged."""
        if isinstance(data, Mapping) and data.get("event") == "output":
            self._output(data, cell_index)
            return
        if not isinstance(data, Mapping) or not isinstance(data.get("run_key"), str):
            self.log(
                f"ignored a malformed nbflows event: {data!r}",
                logging.WARNING,
                cell_index=cell_index,
            )
            return
        kind = data.get("event")
        if kind == "flow_run_started":
            self._child_started(data, cell_index)
        elif kind == "flow_run_finished":
            self._child_finished(data, cell_index)
        else:
            self.log(
                f"ignored an nbflows event of unknown kind {kind!r}",
                logging.WARNING,
                cell_index=cell_index,
            )

    def _output(self, data: Mapping[str, Any], cell_index: int | None) -> None:
        """`nbflows.output(name, value)`: recorded on the child run named by `run_key`, else on
        this run; sent at once, so it is stored before the run's end is reported."""
        key = data.get("run_key")
        with self._lock:
            child = self._children.get(key) if isinstance(key, str) else None
        run_id = child.run_id if child is not None else self.run_id
        name = data.get("name")
        try:
            if not isinstance(name, str):
                raise NBFlowsError(f"an output event needs a name, got {name!r}")
            self.client.record_output(run_id, name, data.get("value"))
        except NBFlowsError as exc:
            self.log(
                f"could not record output {name!r}: {exc}", logging.WARNING, cell_index=cell_index
            )

    def _child_started(self, data: Mapping[str, Any], cell_index: int | None) -> None:
        key = str(data["run_key"])
        flow_name = str(data.get("flow_name") or "flow")
        child = self._children.get(key)
        try:
            if child is None:
                child = self._create_child(key, flow_name, data)
            else:
                self.client.set_flow_run_state(child.run_id, "RUNNING", name="Retrying")
        except NBFlowsError as exc:
            self.log(
                f"could not record flow '{flow_name}' as a child run: {exc}",
                logging.WARNING,
                cell_index=cell_index,
            )
            return
        with self._lock:
            self._open.append(key)

    def _create_child(self, key: str, flow_name: str, data: Mapping[str, Any]) -> _Child:
        parent_key = data.get("parent_run_key")
        parent = self._children.get(parent_key) if isinstance(parent_key, str) else None
        fields: dict[str, Any] = {"parent_run_id": parent.run_id if parent else self.run_id}
        if isinstance(data.get("parameters"), Mapping):
            fields["parameters"] = self.masker.json(dict(data["parameters"]))
        if isinstance(data.get("tags"), list):
            fields["tags"] = [str(x) for x in data["tags"]]
        if isinstance(data.get("max_retries"), int):
            fields["max_retries"] = data["max_retries"]
        if isinstance(data.get("retry_delay"), (int, float)):
            fields["retry_delay"] = data["retry_delay"]
        created = self.client.create_flow_run(flow_name, **fields)
        run_id = str(created["id"])
        child = _Child(
            run_id, self._shipper.open(run_id, live=self._live, mask=self._mask), flow_name
        )
        with self._lock:
            self._children[key] = child
        return child

    def _child_finished(self, data: Mapping[str, Any], cell_index: int | None) -> None:
        key = str(data["run_key"])
        with self._lock:
            child = self._children.get(key)
            if key in self._open:
                self._open.remove(key)
        if child is None:
            return  # its start could not be recorded (said in the log already)
        state = str(data.get("state") or "").upper()
        if state not in TERMINAL_VALUES:
            state = "CRASHED"
        message = self.masker.text(str(data["message"])) if data.get("message") else None
        if data.get("retrying") and state in ("FAILED", "CRASHED"):
            child.log.flush()
            try:
                self.client.set_flow_run_state(child.run_id, state, message=message)
                note = f"attempt {data.get('attempt', '?')} {state.lower()}; retrying"
                self.client.set_flow_run_state(child.run_id, "SCHEDULED", message=note, retry=True)
            except NBFlowsError as exc:
                self.log(
                    f"could not record the retry of child run {child.run_id}: {exc}",
                    logging.WARNING,
                    cell_index=cell_index,
                )
            return
        with self._lock:
            self._children.pop(key, None)
        self._finish_child(child, state, message)

    def _finish_child(self, child: _Child, state: str, message: str | None) -> None:
        child.log.close(self._shipper.give_up)
        try:
            self.client.set_flow_run_state(child.run_id, state, message=message)
        except NBFlowsError as exc:
            self.log(
                f"could not finish child run {child.run_id} of flow '{child.flow_name}' "
                f"as {state}: {exc}",
                logging.WARNING,
            )

    # -- end ------------------------------------------------------------------------------------

    def close_with(self, send: Callable[[list[dict[str, Any]]], bool]) -> bool:
        """End the reporting of this run by `send(lines)`, the worker's end report carrying
        the lines still waiting; False (nothing ended) when it has child runs still open or
        `send` failed: then `close(state)` ends it the usual way."""
        with self._lock:
            if self._children:
                return False
        return self._log.close_with(send)

    # -- end ------------------------------------------------------------------------------------

    def close(self, state: str | None = None) -> bool:
        """End the reporting of this run, which ended in `state` (a state type).

        Children still open end CANCELLED if the run was cancelled, else CRASHED. Returns once
        every buffered line is sent (True), or the worker gave up waiting for the server.
        """
        with self._lock:
            leftover = list(self._children.values())
            self._children.clear()
            self._open = []
        for child in leftover:
            end = "CANCELLED" if state == "CANCELLED" else "CRASHED"
            self._finish_child(
                child,
                end,
                f"the notebook run ended ({state or 'unknown state'}) before the flow finished",
            )
        return self._log.close(self._shipper.give_up)
