"""A worker's heartbeats (which keep it alive and bring cancellations) and its orderly stop: running
runs get `grace` seconds, what is left is handed back.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from nbflows.errors import Conflict, NBFlowsError, NotFound
from nbflows.workers.claimed_run import (
    ServedPool,
)
from nbflows.workers.run_execution import RunExecution
from nbflows.workers.worker_state import (
    CANCEL_TIMEOUT,
    MAX_BACKOFF,
    REPORT_WAIT_AT_EXIT,
)


class Supervision(RunExecution):
    """Heartbeats, cancellation and draining at stop."""

    # -- heartbeats and cancellation ------------------------------------------------------------

    def _heartbeat_loop(self, pool: ServedPool) -> None:
        # Each beat long-polls for `heartbeat_interval` seconds, so a cancellation arrives as
        # soon as it is asked for; the server records a beat when the request starts and ends.
        while not pool.stopped.is_set():
            sent: dict[str, int | None] = {}
            answer = self._beat(pool, wait=self.heartbeat_interval, sent=sent)
            if answer is None:
                pool.stopped.wait(min(self.heartbeat_interval, MAX_BACKOFF))
                continue
            stopping = [
                run_id
                for run_id in answer.get("cancel") or []
                if self._cancel(run_id, sent.get(run_id))
            ]
            if stopping:  # those runs are being stopped; the next answer lists them again
                pool.stopped.wait(0.2)

    def _beat(
        self, pool: ServedPool, wait: float = 0, sent: dict[str, int | None] | None = None
    ) -> dict[str, Any] | None:
        """One heartbeat for `pool`; `sent` receives the fence of each run it listed."""
        with self._slots:
            running = {
                i: a.claimed.fence for i, a in self._active.items() if a.claimed.pool == pool.name
            }
        if sent is not None:
            sent.update(running)
        try:
            answer = self.client.heartbeat(
                pool.name,
                self.name,
                list(running),
                limit=self.limit,
                heartbeat_interval=self.heartbeat_interval,
                wait=wait,
                fences={i: f for i, f in running.items() if f is not None},
                problem=self.pool_problem(pool.name),
            )
        except NotFound:
            pool.stopped.set()
            return None
        except NBFlowsError as exc:
            self._failed(exc)
            return None
        self.link.ok()
        return dict(answer or {})

    def _cancel(self, run_id: str, fence: int | None) -> bool:
        """Stop a run the server says must stop (as listed under `fence`); False when it does
        not execute here (the server settles those itself) or runs under a newer claim."""
        with self._slots:
            active = self._active.get(run_id)
        if active is None or active.cancel_event.is_set():
            return False
        if fence is not None and active.claimed.fence != fence:
            return False  # the beat listed an earlier claim of the run: that one is over
        active.cancelled_by_user = active.stop_reason is None
        active.cancel_event.set()
        return True

    # -- stopping -------------------------------------------------------------------------------

    def _drain(self) -> None:
        """After a stop request: give running runs `grace` seconds, then hand the rest back."""
        deadline = time.monotonic() + self.grace
        if self._running_count():
            self.say(
                f"stopping: waiting up to {self.grace:g} s for {self._running_count()} "
                "running run(s) (stop again to hand them back now)"
            )
        while self._running_count() and time.monotonic() < deadline:
            if self._stop_now.wait(0.1):
                break
        with self._slots:
            left = [a for a in self._active.values() if not a.cancel_event.is_set()]
        for active in left:
            active.stop_reason = self._stop_reason
            active.cancel_event.set()
        if left:
            self.say(f"handing back {len(left)} run(s) still running")
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while self._running_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._slots:
            stuck = list(self._active.values())
        if stuck:  # stopped but still reporting (the server is away), or ignoring the stop
            self.say(
                f"{len(stuck)} run(s) still stopping or reporting; waiting up to "
                f"{REPORT_WAIT_AT_EXIT:g} s more"
            )
            deadline = time.monotonic() + REPORT_WAIT_AT_EXIT
            while self._running_count() and time.monotonic() < deadline:
                time.sleep(0.1)
        self._give_up.set()
        with self._slots:
            stuck = list(self._active.values())
        for active in stuck:  # a run that ignores cancellation must not stay RUNNING
            with contextlib.suppress(Conflict):
                self._report(
                    active.claimed,
                    "CRASHED",
                    f"{self._stop_reason}; the run did not stop within {CANCEL_TIMEOUT:g} s "
                    "of being stopped",
                    patient=False,
                )

    def _running_count(self) -> int:
        with self._slots:
            return len(self._active)
