"""Following one attempt that runs as a Dask task, from submit to outcome.

`AttemptFollower.run` submits the task, then loops until it ends:

* a task's **start** message is granted (its token set in the attempt's Dask `Variable`) only if
  no execution of the attempt was granted before; a second start means Dask rescheduled the task
  (its first worker died): that execution refuses itself and the attempt ends CRASHED — an
  attempt never executes twice, its retry is a new attempt;
* **batches** of output lines and `%%flow` events go to the `RunReporter` in order;
* **cancel**: a task not started yet is cancelled; a running one gets the attempt's Dask `Event`
  set (it interrupts and kills its kernel and returns the notebook so far), and after
  `CANCEL_WAIT` its future is cancelled regardless;
* the Dask worker the attempt runs on is watched: gone → the future is cancelled, CRASHED.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from nbflows.workers.claimed_run import EndState, Outcome
from nbflows.workers.dask.output_files import unpack_output_files
from nbflows.workers.dask.task import run_attempt

if TYPE_CHECKING:
    from nbflows.workers.dask.clusters import Cluster
    from nbflows.workers.reporting import RunReporter

__all__ = ["CANCEL_WAIT", "AttemptFollower"]

#: After asking a task to stop, how long it may take to return its notebook before the future
#: is cancelled.
CANCEL_WAIT = 10.0
#: After the task returned, how long its last messages may take to arrive.
LAST_MESSAGES_WAIT = 5.0
#: How often the loop looks at the future, the cancel request and the Dask worker.
POLL = 0.1

_STATES: dict[str, EndState] = {
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "crashed": "CRASHED",
}


class _Line(NamedTuple):
    """An output line as the reporter takes it (`reporting.OutputLineLike`)."""

    time: datetime
    stream: str
    text: str
    cell_index: int | None


class AttemptFollower:
    """One attempt of a run on a Dask cluster; `run()` once."""

    def __init__(
        self,
        cluster: Cluster,
        spec: dict[str, Any],
        reporter: RunReporter,
        cancel_event: threading.Event,
    ) -> None:
        self.cluster = cluster
        self.spec = spec
        self.reporter = reporter
        self.cancel_event = cancel_event
        self.granted_to: str | None = None
        self.rescheduled_to: str | None = None
        self.received = 0

    def run(self, notebook: dict[str, Any], project: bytes | None, resources: dict) -> Outcome:
        from distributed import Variable

        client = self.cluster.client
        key = self.spec["key"]
        with self.cluster.messages(key) as messages:
            future = client.submit(
                run_attempt,
                self.spec,
                notebook,
                project,
                key=key,
                resources=resources or None,
                pure=False,
                retries=0,
            )
            try:
                return self._follow(future, messages)
            finally:
                with contextlib.suppress(Exception):
                    Variable(self.spec["grant"], client=client).delete()
                future.release()

    def _follow(self, future: Any, messages: queue.Queue[dict[str, Any]]) -> Outcome:
        from distributed import Event

        asked_to_stop: float | None = None
        while True:
            self._drain(messages, POLL)
            if future.done():
                return self._ended(future, messages)
            if self.rescheduled_to is not None:
                future.cancel()
                return self._worker_lost(f"Dask rescheduled its task on {self.rescheduled_to}")
            if self.cancel_event.is_set() and self.granted_to is None:
                future.cancel()  # still queued on Dask: nothing ran
                return Outcome("CANCELLED", "Cancelled before it started on a Dask worker.")
            if self.cancel_event.is_set():
                if asked_to_stop is None:
                    asked_to_stop = time.monotonic()
                    Event(self.spec["cancel"], client=self.cluster.client).set()
                elif time.monotonic() - asked_to_stop > CANCEL_WAIT:
                    future.cancel()
                    return Outcome(
                        "CANCELLED",
                        f"Cancelled; the task did not stop within {CANCEL_WAIT:g} s, its Dask "
                        "future was cancelled (the notebook did not come back).",
                    )
            elif self.granted_to is not None and not self._alive(self.granted_to):
                future.cancel()
                return self._worker_lost("it left the cluster")

    def _alive(self, address: str) -> bool:
        try:
            return self.cluster.worker_alive(address)
        except Exception:
            return True  # the scheduler is away: the future says so if it does not come back

    def _worker_lost(self, how: str) -> Outcome:
        return Outcome(
            "CRASHED",
            f"The Dask worker {self.granted_to} running the attempt died ({how}); the attempt "
            "is not executed a second time.",
        )

    def _drain(self, messages: queue.Queue[dict[str, Any]], wait: float) -> None:
        try:
            message = messages.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            self.received += 1
            self._handle(message)
            try:
                message = messages.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: dict[str, Any]) -> None:
        from distributed import Variable

        if message.get("kind") == "start":
            worker = str(message.get("worker"))
            if self.granted_to is None:
                Variable(self.spec["grant"], client=self.cluster.client).set(message["token"])
                self.granted_to = worker
                self.reporter.log(f"running on the Dask worker {worker}")
            else:
                self.rescheduled_to = worker
                self.reporter.log(
                    f"Dask started the task again on {worker} (its first worker "
                    f"{self.granted_to} is gone); refused: an attempt runs once",
                    logging.WARNING,
                )
            return
        for item in message.get("items") or []:
            if item[0] == "line":
                _, when, stream, text, cell = item
                self.reporter.output(_Line(datetime.fromisoformat(when), stream, text, cell))
            elif item[0] == "event":
                self.reporter.event(item[1], item[2])

    def _ended(self, future: Any, messages: queue.Queue[dict[str, Any]]) -> Outcome:
        if future.status == "cancelled":
            if self.cancel_event.is_set():
                return Outcome("CANCELLED", "Cancelled; the Dask future was cancelled.")
            return Outcome(
                "CRASHED",
                "The Dask scheduler dropped the task (the scheduler restarted or the "
                "connection to it was lost).",
            )
        if future.status == "error":
            exc = future.exception()
            if type(exc).__name__ == "KilledWorker":
                return self._worker_lost("Dask gave the task up: KilledWorker")
            return Outcome("CRASHED", f"The Dask task failed: {type(exc).__name__}: {exc}")
        result = future.result()
        deadline = time.monotonic() + LAST_MESSAGES_WAIT
        while self.received < result.get("batches", 0) and time.monotonic() < deadline:
            self._drain(messages, POLL)
        if result["status"] == "refused":
            return self._worker_lost(f"Dask rescheduled its task on {result.get('worker')}")
        state = _STATES[result["status"]]
        message = "" if state == "COMPLETED" else str(result.get("message") or "")
        output_dir = None
        if result.get("output_files"):
            output_dir = unpack_output_files(result["output_files"], self.spec["key"])
        return Outcome(state, message, result.get("notebook"), output_dir=output_dir)
