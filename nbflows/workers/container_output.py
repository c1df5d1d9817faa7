"""Following a run container: its stdout relayed live to the run's log and events, and the run's
end state read from the runner's result, the exit code or the signal that stopped it.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nbflows.workers.claimed_run import EndState
from nbflows.workers.container_runner import RECORD_PREFIX
from nbflows.workers.reporting import RunReporter

if TYPE_CHECKING:
    from docker.models.containers import Container

#: Lines of a container's plain output kept to explain an exit that left no result.
_TAIL_LINES = 20
_STATES: dict[str, EndState] = {
    "completed": "COMPLETED",
    "failed": "FAILED",
    "crashed": "CRASHED",
    "cancelled": "CANCELLED",
}


@dataclass(frozen=True)
class _Line:
    """One output line of the container (an `OutputLineLike` for `RunReporter.output`)."""

    time: datetime
    stream: str
    text: str
    cell_index: int | None = None


class Relay:
    """Turns the container's output into log lines and run events, as it comes."""

    def __init__(self, reporter: RunReporter) -> None:
        self._reporter = reporter
        self._lock = threading.Lock()
        #: Whether the runner spoke (records seen): without it, the output is a custom command's.
        self.records = 0
        #: The last plain lines, to explain an exit that left no result.
        self.tail: list[str] = []

    def line(self, stream: str, text: str) -> None:
        with self._lock:  # the two streams' threads: one line at a time, in order of arrival
            if stream == "stdout" and text.startswith(RECORD_PREFIX):
                try:
                    record = json.loads(text[len(RECORD_PREFIX) :])
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.records += 1
                    self._record(record)
                    return
            self.tail.append(text)
            del self.tail[:-_TAIL_LINES]
            self._reporter.output(_Line(datetime.now(timezone.utc), stream, text))

    def _record(self, record: Mapping[str, Any]) -> None:
        cell = record.get("cell")
        cell_index = cell if isinstance(cell, int) else None
        if record.get("k") == "line":
            try:
                moment = datetime.fromisoformat(str(record.get("time")))
            except ValueError:
                moment = datetime.now(timezone.utc)
            stream, text = str(record.get("stream") or "stdout"), str(record.get("text") or "")
            self._reporter.output(_Line(moment, stream, text, cell_index))
        elif record.get("k") == "event":
            self._reporter.event(record.get("data"), cell_index)


def follow(container: Container, stream: str, relay: Relay) -> None:
    """Relay one of the container's output streams, line by line, until the container ends."""
    pending = b""
    try:
        for chunk in container.logs(
            stdout=stream == "stdout", stderr=stream == "stderr", stream=True, follow=True
        ):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                relay.line(stream, raw.decode("utf-8", "replace").rstrip("\r"))
    except Exception as exc:  # the engine went away: the run's end is decided by its state
        relay.line("stderr", f"[nbflows] following the container's {stream} stopped: {exc}")
    if pending:
        relay.line(stream, pending.decode("utf-8", "replace").rstrip("\r"))


def end_state(
    *,
    stopped: str | None,
    exit_code: int,
    oom_killed: bool,
    result: Mapping[str, Any],
    relay: Relay,
    mem_limit: str | None,
    timeout: float | None,
    custom_command: bool,
) -> tuple[EndState, str]:
    """How a container run ended: cancelled by the worker, else killed for memory, else stopped
    by the worker at its timeout, else as the runner's result says, else by the exit code."""
    message = str(result.get("message") or "")
    if stopped == "cancelled":
        return "CANCELLED", message or "cancelled: the container was stopped"
    if oom_killed or result.get("oom"):
        limit = f"killed: out of memory (mem_limit {mem_limit or 'none'})"
        return "CRASHED", f"{limit}: {message}" if message else limit
    if stopped == "timeout":
        return "FAILED", (
            f"Timed out: the run exceeded its timeout of {timeout:g} s; the container was stopped"
        )
    status = result.get("status")
    if isinstance(status, str) and status in _STATES:
        return _STATES[status], "" if status == "completed" else message
    if exit_code == 0:
        return "COMPLETED", ""
    said = " | ".join(line for line in relay.tail[-5:] if line.strip())
    if not custom_command and relay.records == 0 and "No module named" in said:
        return "FAILED", (
            f"the container exited with code {exit_code} before running the notebook: {said}. "
            "The image needs nbflows, papermill and ipykernel: build it with dockerfile='auto', "
            "or install them in your Dockerfile"
        )
    if exit_code > 128:
        return "CRASHED", (
            f"the container was killed ({_signal_name(exit_code - 128)}, exit code {exit_code})"
        )
    return "FAILED", f"the container exited with code {exit_code}" + (f": {said}" if said else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
