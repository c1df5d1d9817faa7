"""Claiming: which pools a worker serves, and for each a thread that long-polls the server for due
runs as long as the worker has free slots.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from nbflows.errors import NBFlowsError, NotFound
from nbflows.workers.claimed_run import (
    ActiveRun,
    ClaimedRun,
    ServedPool,
)
from nbflows.workers.supervision import Supervision
from nbflows.workers.worker_state import (
    CLAIM_WAIT,
    MAX_BACKOFF,
)


class PoolClaiming(Supervision):
    """The pools served and the claim loop of each."""

    # -- pools ----------------------------------------------------------------------------------

    def _serve_pools(self, first: bool = False) -> None:
        """Start serving the pools that should be served and are not (yet, or any more)."""
        try:
            wanted = self._wanted_pools()
        except NBFlowsError as exc:
            if first:
                raise
            self._failed(exc)
            return
        self.link.ok()
        for pool in wanted:
            name = str(pool["name"])
            served = self._served.get(name)
            if served is not None:
                if served.alive():
                    continue
                served.stopped.set()  # what is left of it ends; it is served anew
            queues = self._queues_of(pool)
            if queues == []:
                continue  # none of the requested queues is in this pool
            self._start_serving(ServedPool(name, queues))

    def _wanted_pools(self) -> list[dict[str, Any]]:
        if self.pools is None:
            return [p for p in self.client.list_work_pools() if p.get("type") == self.type]
        found = []
        for name in self.pools:
            try:
                found.append(self.client.read_work_pool(name))
            except NotFound:
                if name in self._served:  # deleted while served: it may come back
                    continue
                raise
        return found

    def _queues_of(self, pool: Mapping[str, Any]) -> list[str] | None:
        if self.queues is None:
            return None
        have = {q.get("name") for q in pool.get("queues") or []}
        return [q for q in self.queues if q in have]

    def _start_serving(self, pool: ServedPool) -> None:
        # The pool shows the worker online before it claims; the server settles what a
        # previous process of this name held and this one does not run.
        self._beat(pool)
        self._served[pool.name] = pool
        for target, kind in ((self._claim_loop, "claim"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(
                target=target, args=(pool,), name=f"nbflows-{kind}-{pool.name}", daemon=True
            )
            pool.threads.append(thread)
            thread.start()
        queues = f" (queues {', '.join(pool.queues)})" if pool.queues else ""
        self.say(f"serving work pool '{pool.name}'{queues}")

    # -- claiming -------------------------------------------------------------------------------

    def _claim_loop(self, pool: ServedPool) -> None:
        failures = 0
        while not (self._stopping.is_set() or pool.stopped.is_set()):
            free = self._wait_for_free_slots(pool)
            if free <= 0:
                continue
            try:
                answer = self.client.claim(
                    pool.name, self.name, queues=pool.queues, limit=free, wait=CLAIM_WAIT
                )
            except NotFound as exc:
                self.say(f"stopped serving work pool '{pool.name}': {exc}")
                pool.stopped.set()
                return
            except Exception as exc:  # the server is away or answered nonsense: try again
                failures += 1
                self._failed(exc)
                self._stopping.wait(min(0.25 * 2**failures, MAX_BACKOFF))
                continue
            failures = 0
            self.link.ok()
            for item in answer:
                self._accept(ClaimedRun.from_json(pool.name, item))

    def _wait_for_free_slots(self, pool: ServedPool) -> int:
        with self._slots:
            while len(self._active) >= self.limit:
                if self._stopping.is_set() or pool.stopped.is_set():
                    return 0
                self._slots.wait(1.0)
            return self.limit - len(self._active)

    def _accept(self, claimed: ClaimedRun) -> None:
        """Start a claimed run, or hand it back when stopping or full (other pools claimed too)."""
        with self._slots:
            refused = (
                "the worker is stopping"
                if self._stopping.is_set()
                else "the worker is at its limit"
                if len(self._active) >= self.limit
                else None
            )
            if refused is None:
                active = ActiveRun(claimed)
                self._active[claimed.id] = active
        if refused is not None:
            self._hand_back(claimed, refused)
            return
        threading.Thread(
            target=self._execute, args=(active,), name=f"nbflows-run-{claimed.id}", daemon=True
        ).start()
