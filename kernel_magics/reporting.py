"""Where a kernel's flow runs are recorded: the server, the output stream, or the local journal.

Every reporter has the same small interface (`Reporter`): `start_run` at the start of each
attempt, `log` with captured lines, `finish` at the end of each attempt, and `recent_runs` for
`Flow.runs()`. Which one is used is decided per kernel by `get_reporter()`:

- `HeadlessReporter` when a worker runs the kernel (`NBFLOWS_FLOW_RUN_ID` is set): no network;
  events travel in the cell's output as `application/vnd.nbflows.event+json` display data, which
  the worker relays.
- `ApiReporter` when a server is found (`nbflows.client.rest.get_client()`).
- `LocalStoreReporter` otherwise (plain IPython, VS Code without a server): runs are appended
  to the local journal (`nbflows.client.journal`), which the next server to start imports.

`set_reporter()` replaces the choice for the whole process (tests use it to record runs).

The cell never waits for the network or the disk: `ApiReporter` and `LocalStoreReporter`
queue what they learn and a daemon thread delivers it in order, batching the log lines that piled
up while the previous request was in flight. A delivery problem never fails a cell; it is shown
as one line of the next `%%flow` cell.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from nbflows.client.context import KernelContext, current_context
from nbflows.kernel_magics.capture import LogLine
from nbflows.protocol import EVENT_MIME_TYPE

if TYPE_CHECKING:
    from nbflows.client.rest import Client

__all__ = [
    "ApiReporter",
    "FlowRunRecord",
    "HeadlessReporter",
    "LocalStoreReporter",
    "Reporter",
    "get_reporter",
    "set_reporter",
]

#: The mime type of the events a headless kernel puts into its output for the worker.

#: Seconds between the beats a kernel sends for its open runs on the server; a run whose kernel
#: misses 3 (killed, say) is CRASHED by the server.
HEARTBEAT_INTERVAL = 5.0

#: The run-level state message of a retry, shown while the run waits for its next attempt.
_RETRY_NOTE = "attempt {attempt} failed: {reason}; retrying in {delay:g} s"


@dataclass(eq=False)
class FlowRunRecord:
    """The kernel's record of one flow run (all its attempts), shared with the reporter.

    `key` identifies the run inside the kernel before (or without) a server id; `id` is the
    server's id once `ApiReporter` has created the run. Times are epoch seconds.
    """

    flow_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    notebook_path: str | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    parent: FlowRunRecord | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 1
    created: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    id: str | None = None
    #: What the run recorded with `nbflows.output(name, value)`.
    outputs: dict[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    """Records flow runs somewhere; called on the thread that runs the flow."""

    def start_run(self, run: FlowRunRecord) -> None:
        """An attempt of `run` starts: `run.attempt` is 1, then 2, 3... on retries."""

    def log(self, run: FlowRunRecord, lines: list[LogLine]) -> None:
        """Captured log lines of the running attempt (see `nbflows.kernel_magics.capture`)."""

    def finish(
        self, run: FlowRunRecord, state: str, message: str | None, *, retrying: bool = False
    ) -> None:
        """The attempt ended in `state` (COMPLETED, FAILED or CANCELLED).

        `retrying=True`: it FAILED and another attempt follows after `run.retry_delay`.
        """

    def recent_runs(self, flow_name: str, limit: int) -> list[dict[str, Any]]:
        """The newest runs of `flow_name` (FlowRun dicts as in docs/api.md), newest first."""
        ...

    def output(self, run: FlowRunRecord | None, name: str, value: Any) -> None:
        """`nbflows.output(name, value)` in `run` (None: outside any `%%flow` run; only a
        headless kernel has a run then, the worker's). The value is checked already."""


# --------------------------------------------------------------------------------------------
# Choosing a reporter

_override: Reporter | None = None
_auto: tuple[tuple[str | None, ...], Reporter] | None = None
_choice_lock = threading.Lock()


def set_reporter(reporter: Reporter | None) -> Reporter | None:
    """Use `reporter` for every flow run of this process; None goes back to the automatic choice.

    Returns the reporter set before (None when it was automatic), so a caller can restore it.
    """
    global _override
    previous, _override = _override, reporter
    return previous


def get_reporter(context: KernelContext | None = None) -> Reporter:
    """The reporter for runs in this kernel: the one set with `set_reporter`, else by context.

    The automatic choice is made once per context (a changed environment, as in tests, makes it
    again); finding out whether a server exists imports `nbflows.client.rest` the first time.
    """
    global _auto
    if _override is not None:
        return _override
    ctx = context if context is not None else current_context()
    key = (ctx.flow_run_id, ctx.flow_name, ctx.run_kind, ctx.api_url, ctx.api_token)
    with _choice_lock:
        if _auto is None or _auto[0] != key:
            _auto = (key, _choose(ctx))
        return _auto[1]


def _choose(ctx: KernelContext) -> Reporter:
    if ctx.headless:
        return HeadlessReporter(ctx)
    from nbflows.client.api_errors import NoServerError
    from nbflows.client.rest import get_client

    try:
        return ApiReporter(get_client())
    except NoServerError:
        return LocalStoreReporter()


# --------------------------------------------------------------------------------------------
# Delivery off the cell's thread


class _Outbox:
    """Runs `deliver(batch)` on a daemon thread for items put in order; `flush` waits for it."""

    def __init__(self, name: str, deliver: Callable[[list[tuple[Any, ...]]], None]) -> None:
        self._name = name
        self._deliver = deliver
        self._items: deque[tuple[Any, ...]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, item: tuple[Any, ...]) -> None:
        with self._cond:
            self._items.append(item)
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
                # A daemon thread dies with the interpreter: deliver what is left first.
                atexit.register(self.flush, 5.0)
            self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is delivered; False when `timeout` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items))
                batch = list(self._items)
                self._items.clear()
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()


def _coalesce_logs(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Merge consecutive ("log", run, lines) items of the same run into one request."""
    merged: list[tuple[Any, ...]] = []
    for item in batch:
        if item[0] == "log" and merged and merged[-1][0] == "log" and merged[-1][1] is item[1]:
            merged[-1] = ("log", item[1], merged[-1][2] + item[2])
        else:
            merged.append(item)
    return merged


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _api_lines(lines: list[LogLine]) -> list[dict[str, Any]]:
    return [{**line, "timestamp": _iso(line["timestamp"])} for line in lines]


def _jsonable(value: Any) -> Any:
    # Parameters may hold anything (a DataFrame...): what JSON cannot hold is kept as its repr.
    return json.loads(json.dumps(value, default=repr))


def _first_line(message: str | None) -> str:
    return message.splitlines()[0] if message else "no message"


class _QueuedReporter:
    """Shared by the reporters that deliver on a background thread."""

    _thread_name = "nbflows-reporter"

    def __init__(self) -> None:
        self._outbox = _Outbox(self._thread_name, self._deliver_batch)
        self._problem: str | None = None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event is delivered (False if `timeout` ran out first)."""
        return self._outbox.flush(timeout)

    def _announce_problem(self) -> None:
        # Called on the cell's thread: the background thread has no cell to print into.
        problem, self._problem = self._problem, None
        if problem:
            print(f"nbflows: {problem}", file=sys.stderr)

    def _deliver_batch(self, batch: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# The server


class ApiReporter(_QueuedReporter):
    """Records runs on an nbflows server through `nbflows.client.rest` (from a background thread).

    The run is created (`POST flow_runs`, state RUNNING) when its first attempt starts, its log
    lines follow in batches, each attempt's end sets its state; a retry moves the run
    FAILED → SCHEDULED/AwaitingRetry, then RUNNING/Retrying when the next attempt starts.
    Until its last attempt ends, another daemon thread beats for the run every
    `HEARTBEAT_INTERVAL` seconds, so a run whose kernel dies does not stay RUNNING.
    """

    _thread_name = "nbflows-api-reporter"

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client
        self._open: dict[str, FlowRunRecord] = {}
        self._open_lock = threading.Lock()
        self._beating: threading.Thread | None = None

    def start_run(self, run: FlowRunRecord) -> None:
        self._announce_problem()
        with self._open_lock:
            self._open[run.key] = run
            if self._beating is None:
                self._beating = threading.Thread(
                    target=self._beat, name="nbflows-run-heartbeat", daemon=True
                )
                self._beating.start()
        self._outbox.put(("start", run, run.attempt))

    def log(self, run: FlowRunRecord, lines: list[LogLine]) -> None:
        self._outbox.put(("log", run, lines))

    def finish(
        self, run: FlowRunRecord, state: str, message: str | None, *, retrying: bool = False
    ) -> None:
        self._outbox.put(("finish", run, run.attempt, state, message, retrying))
        if not retrying:
            with self._open_lock:
                self._open.pop(run.key, None)

    def output(self, run: FlowRunRecord | None, name: str, value: Any) -> None:
        if run is not None:
            self._outbox.put(("output", run, name, value))

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_INTERVAL)
            with self._open_lock:
                ids = [r.id for r in self._open.values() if r.id is not None]
            for run_id in ids:
                # A missed beat is no problem (the server allows 3): nothing to announce.
                with contextlib.suppress(Exception):
                    self._client.heartbeat_flow_run(run_id, HEARTBEAT_INTERVAL)

    def recent_runs(self, flow_name: str, limit: int) -> list[dict[str, Any]]:
        from nbflows.client.rest import get_client

        self.flush(5.0)
        with get_client() as client:
            return client.list_flow_runs(flow_name=flow_name, limit=limit)

    def _deliver_batch(self, batch: list[tuple[Any, ...]]) -> None:
        for item in _coalesce_logs(batch):
            run: FlowRunRecord = item[1]
            if item[0] != "start" and run.id is None:
                continue  # its creation failed: the problem is reported already
            try:
                self._deliver(item)
            except Exception as exc:
                self._problem = (
                    f"could not record flow run {run.flow_name!r} on the server at "
                    f"{self._client.api_url}: {exc}"
                )

    def _deliver(self, item: tuple[Any, ...]) -> None:
        kind, run = item[0], item[1]
        client = self._client
        if kind == "start":
            attempt = item[2]
            if attempt == 1:
                parent = run.parent.id if run.parent is not None else None
                created = client.create_flow_run(
                    run.flow_name,
                    parameters=_jsonable(run.parameters),
                    tags=run.tags,
                    parent_run_id=parent,
                    notebook_path=run.notebook_path,
                    max_retries=run.max_retries,
                    retry_delay=run.retry_delay,
                    description=run.description,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                )
                run.id = str(created["id"])
            elif run.id is not None:
                client.set_flow_run_state(run.id, "RUNNING", name="Retrying")
        elif kind == "log":
            assert run.id is not None
            client.write_logs(run.id, _api_lines(item[2]))
        elif kind == "output":
            assert run.id is not None
            client.record_output(run.id, item[2], item[3])
        elif kind == "finish":
            assert run.id is not None
            _, _, attempt, state, message, retrying = item
            client.set_flow_run_state(run.id, state, message=message)
            if retrying:
                note = _RETRY_NOTE.format(
                    attempt=attempt, reason=_first_line(message), delay=run.retry_delay
                )
                client.set_flow_run_state(run.id, "SCHEDULED", message=note, retry=True)


# --------------------------------------------------------------------------------------------
# No server: the local journal


class LocalStoreReporter(_QueuedReporter):
    """Records finished runs in the local journal the next server imports (no server needed).

    A run is appended once, when its last attempt ends, with all its log lines, through
    `nbflows.client.journal.append_run(run, logs)` on a background thread (the cell does not
    wait for the disk). The kernel never opens or migrates the store itself: the server imports
    the journal when it starts. At most `MAX_LOG_LINES` lines are kept per run.
    """

    _thread_name = "nbflows-local-reporter"
    MAX_LOG_LINES = 100_000

    def __init__(self) -> None:
        super().__init__()
        self._logs: dict[str, list[LogLine]] = {}
        self._dropped: dict[str, int] = {}

    def start_run(self, run: FlowRunRecord) -> None:
        self._announce_problem()
        self._logs.setdefault(run.key, [])

    def log(self, run: FlowRunRecord, lines: list[LogLine]) -> None:
        kept = self._logs.setdefault(run.key, [])
        room = self.MAX_LOG_LINES - len(kept)
        kept.extend(lines[: max(room, 0)])
        if len(lines) > room:
            self._dropped[run.key] = self._dropped.get(run.key, 0) + len(lines) - max(room, 0)

    def finish(
        self, run: FlowRunRecord, state: str, message: str | None, *, retrying: bool = False
    ) -> None:
        if retrying:
            return  # the failed attempt's traceback is among the run's log lines
        logs = self._logs.pop(run.key, [])
        dropped = self._dropped.pop(run.key, 0)
        if dropped:
            logs.append(
                {
                    "timestamp": time.time(),
                    "level": 30,
                    "message": f"{dropped} more log lines were not kept (limit "
                    f"{self.MAX_LOG_LINES} per run)",
                    "source": "worker",
                }
            )
        self._outbox.put(("record", run, state, message, logs))

    def output(self, run: FlowRunRecord | None, name: str, value: Any) -> None:
        return None  # kept on the record (`run.outputs`), written with the run when it ends

    def recent_runs(self, flow_name: str, limit: int) -> list[dict[str, Any]]:
        from nbflows.client import journal

        self.flush(10.0)
        return journal.recent_runs(flow_name, limit)

    def _deliver_batch(self, batch: list[tuple[Any, ...]]) -> None:
        from nbflows.client import journal

        for _, run, state, message, logs in batch:
            try:
                journal.append_run(_run_dict(run, state, message), _api_lines(logs))
            except Exception as exc:
                self._problem = (
                    f"could not record flow run {run.flow_name!r} in the local journal: {exc}"
                )


def _run_dict(run: FlowRunRecord, state: str, message: str | None) -> dict[str, Any]:
    """The run as `nbflows.client.journal.append_run` takes it.

    No `parent_run_id`: a parent is recorded after its children (when it ends), so its store id
    is not known yet when they are written.
    """
    return {
        "flow_name": run.flow_name,
        "state": state,
        "message": message,
        "parameters": _jsonable(run.parameters),
        "tags": list(run.tags),
        "notebook_path": run.notebook_path,
        "outputs": dict(run.outputs),
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
    }


# --------------------------------------------------------------------------------------------
# Headless: events in the output stream


class HeadlessReporter:
    """Reports a worker-run kernel's `%%flow` cells as events in the cell output.

    Each event is display data `{EVENT_MIME_TYPE: event, "text/plain": one line}`; the worker
    reads the events from the kernel's output and applies them to its run, so nothing needs a
    network path to the server. Events: `flow_run_started` and `flow_run_finished`, one pair per
    attempt, with `run_key` (pairs them), `flow_name`, `parent_run_id` (the worker's run),
    `parent_run_key` (an enclosing `%%flow` run), `attempt`, `max_retries`, `state`,
    `state_name`, `message`, `timestamp`, and on `flow_run_finished` `start_time`, `end_time`,
    `duration` and `retrying`.

    The deployed cell flow itself (`KernelContext.is_deployed_flow`) *is* the worker's run and
    sends no events. Log lines are not sent: what a run prints is in the output stream already,
    which the worker relays.
    """

    def __init__(
        self,
        context: KernelContext,
        publish: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._context = context
        self._publish = publish or _publish_display_data

    def start_run(self, run: FlowRunRecord) -> None:
        if self._is_the_workers_run(run):
            return
        name = "Running" if run.attempt == 1 else "Retrying"
        self._send(run, "flow_run_started", "RUNNING", name, None, {})

    def log(self, run: FlowRunRecord, lines: list[LogLine]) -> None:
        return None

    def finish(
        self, run: FlowRunRecord, state: str, message: str | None, *, retrying: bool = False
    ) -> None:
        if self._is_the_workers_run(run):
            return
        start, end = run.start_time, run.end_time
        extra = {
            "start_time": _iso(start),
            "end_time": _iso(end),
            "duration": (end - start) if start is not None and end is not None else None,
            "retrying": retrying,
        }
        self._send(run, "flow_run_finished", state, state.capitalize(), message, extra)

    def recent_runs(self, flow_name: str, limit: int) -> list[dict[str, Any]]:
        return []

    def output(self, run: FlowRunRecord | None, name: str, value: Any) -> None:
        """An `output` event: on the worker's run (`run_key` null) or on a child run."""
        child = run is not None and not self._is_the_workers_run(run)
        event = {
            "event": "output",
            "run_key": run.key if child and run is not None else None,
            "name": name,
            "value": value,
            "timestamp": _iso(time.time()),
        }
        self._publish({EVENT_MIME_TYPE: event, "text/plain": f"nbflows: output {name!r} recorded"})

    def _is_the_workers_run(self, run: FlowRunRecord) -> bool:
        return run.parent is None and self._context.is_deployed_flow(run.flow_name)

    def _send(
        self,
        run: FlowRunRecord,
        event_name: str,
        state: str,
        state_name: str,
        message: str | None,
        extra: dict[str, Any],
    ) -> None:
        event = {
            "event": event_name,
            "run_key": run.key,
            "flow_name": run.flow_name,
            "parent_run_id": self._context.flow_run_id,
            "parent_run_key": (
                run.parent.key
                if run.parent is not None and not self._is_the_workers_run(run.parent)
                else None
            ),
            "attempt": run.attempt,
            "max_retries": run.max_retries,
            "state": state,
            "state_name": state_name,
            "message": message,
            "tags": list(run.tags),
            "parameters": _jsonable(run.parameters),
            "timestamp": _iso(time.time()),
            **extra,
        }
        summary = f"nbflows: flow run {run.flow_name!r} attempt {run.attempt}: {state_name}"
        if message:
            summary += f" ({_first_line(message)})"
        self._publish({EVENT_MIME_TYPE: event, "text/plain": summary})


def _publish_display_data(data: dict[str, Any]) -> None:
    from IPython.display import publish_display_data

    publish_display_data(data)
