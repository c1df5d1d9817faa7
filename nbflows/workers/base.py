"""The worker life cycle, shared by every pool type: claim, run, report, heartbeat, stop.

A pool type is a subclass that declares `type` and implements one method::

    class ProcessWorker(BaseWorker):
        type = "process"

        def run(self, claimed, reporter, cancel_event) -> Outcome:
            ...  # execute claimed.flow_run on this pool's infrastructure

Everything else is here and the same for every type. `serve()` is the work loop: for each pool
it serves, a claim thread long-polls the server for due runs (as many as the worker has free
slots, so a run is handed over the moment it is created) and a heartbeat thread keeps the worker
alive and learns which runs to cancel. Each claimed run executes on its own thread:
PENDING → RUNNING → `run()` → logs flushed, executed notebook stored → COMPLETED / FAILED /
CRASHED / CANCELLED. `stop()` (SIGTERM, SIGINT) stops claiming, lets running runs finish for
`grace` seconds, hands what is left back to the server (scheduled again for any worker, the
attempt not counted) and returns with nothing left RUNNING.

Outages: a worker rides them out. Its runs go on; their log lines, notebooks and end states wait
and are sent when the server is back (the server keeps the runs of a worker that reconnects, and
stores a line sent twice once). Every report carries the claim's fencing token, so the results
of an attempt count only while this worker holds it. When the pool type's infrastructure is
missing (no Docker engine, say), the worker says why on its pools and tries again later.

The worker talks to the server only through `nbflows.client.rest`.
"""

from __future__ import annotations

import time

from nbflows.errors import NBFlowsError
from nbflows.workers.claiming import PoolClaiming
from nbflows.workers.reporting import LogShipper
from nbflows.workers.worker_state import (
    POOL_REFRESH_INTERVAL,
    SETUP_RETRY,
)

__all__ = ["BaseWorker"]


class BaseWorker(PoolClaiming):
    """Claims due runs of its pools and executes them; subclasses implement `run()`.

    `pools=None` serves every pool of the worker's `type`, including pools created while it
    runs. `queues` restricts claiming to those queues (in pools that have them). At most
    `limit` runs execute at once. `echo` receives the lines a person watching the worker reads.
    Without a `name`, the worker takes `default_worker_name(type)`.
    """

    # -- life cycle -----------------------------------------------------------------------------

    def serve(self) -> None:
        """Claim and execute runs until `stop()`; return once no run of this worker executes."""
        self._shipper = LogShipper(self.client, link=self.link, give_up=self._give_up)
        ready = False
        try:
            if not self._named:
                self.name = self._free_name()
            self.say(f"worker '{self.name}' ({self.type}) started, limit {self.limit}")
            ready = self._set_up()
            if ready:
                self._serve_pools(first=True)
                while not self._stopping.wait(POOL_REFRESH_INTERVAL):
                    self._serve_pools()
            self.say(f"stopping: {self._stop_reason}")
            self._drain()
        finally:
            for pool in self._served.values():
                pool.stopped.set()
            self._give_up.set()
            self._shipper.close()
            if ready:
                self.teardown()
            self.say(f"worker '{self.name}' stopped")

    def stop(self, reason: str = "the worker was stopped", *, now: bool = False) -> None:
        """Stop claiming; running runs get `grace` seconds (none with `now` or on a 2nd call),
        then they are handed back."""
        if self._stopping.is_set() or now:
            self._stop_now.set()
        if not self._stopping.is_set():
            self._stop_reason = reason
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()

    def _free_name(self) -> str:
        """The default name, or `-2`, `-3`... after it while a worker of that name is online in
        one of the pools (two workers started alike on one machine)."""
        try:
            pools = [str(p["name"]) for p in self._wanted_pools()]
            online = {
                str(w["name"])
                for pool in pools
                for w in self.client.list_workers(pool)
                if w.get("status") == "ONLINE"
            }
        except NBFlowsError:
            return self.name
        name, n = self.name, 1
        while name in online:
            n += 1
            name = f"{self.name}-{n}"
        return name

    def _set_up(self) -> bool:
        """`setup()`, tried again until it works or the worker stops; meanwhile the worker's
        pools say why they are not served. False if the worker stopped first."""
        problem = None
        while not self._stopping.is_set():
            try:
                self.setup()
            except Exception as exc:
                if problem is None:
                    self.say(
                        f"{self.type} runs cannot be executed here: {exc} (the work pools "
                        f"show why; trying again every {SETUP_RETRY:g} s)"
                    )
                problem = f"cannot execute {self.type} runs: {exc}"
                deadline = time.monotonic() + SETUP_RETRY
                while time.monotonic() < deadline:
                    self._beat_problem(problem)
                    if self._stopping.wait(min(self.heartbeat_interval, SETUP_RETRY)):
                        return False
                continue
            if problem is not None:
                self.say(f"{self.type} runs can be executed here again")
            return True
        return False

    def _beat_problem(self, problem: str) -> None:
        try:
            pools = self._wanted_pools()
        except NBFlowsError as exc:
            self._failed(exc)
            return
        for pool in pools:
            try:
                self.client.heartbeat(
                    str(pool["name"]),
                    self.name,
                    [],
                    limit=self.limit,
                    heartbeat_interval=self.heartbeat_interval,
                    problem=problem,
                )
            except NBFlowsError as exc:
                self._failed(exc)
                return
        self.link.ok()
