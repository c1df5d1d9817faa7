"""The server's delivery loop: claims due outbox rows and delivers them on threads of its own,
so that SMTP, webhooks and apprise never hold the server's event loop.

Every server runs one; claims make each row delivered by one of them. A server killed
mid-delivery leaves its row claimed until the lease runs out, then another pass takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nbflows.automations import actions, channels, outbox, templates
from nbflows.automations.channels import DeliveryFailed
from nbflows.automations.tables import Automation, AutomationDelivery
from nbflows.errors import NBFlowsError
from nbflows.store import tables as t
from nbflows.store.db import Database

log = logging.getLogger("nbflows")


@dataclass
class DeliverySettings:
    #: Seconds before the first retry; each next one waits twice as long (capped at an hour).
    retry_delay: float = 10.0
    #: Attempts before a delivery is given up as failed.
    max_attempts: int = 8
    #: Seconds between looks at the outbox when nothing was due.
    poll_interval: float = 1.0
    #: The dashboard's URL (ending in `/nbflows/`), for links in messages.
    dashboard_url: str | None = None


class Deliverer:
    """Delivers due rows, one claim at a time (synchronous: call it on a thread)."""

    def __init__(self, db: Database, settings: DeliverySettings, server: str | None = None):
        self.db = db
        self.settings = settings
        self.server = server or f"{socket.gethostname()}:{os.getpid()}"

    def deliver_due(self, limit: int = 10) -> int:
        """Claim and deliver what is due; returns how many rows were claimed."""
        with self.db.session() as s:
            claimed = outbox.claim_due(s, self.server, limit)
        for delivery_id, attempt in claimed:
            try:
                self.deliver(delivery_id, attempt)
            except Exception:  # one bad row must not stop the others; its lease retries it
                log.exception("nbflows: delivery %s failed unexpectedly", delivery_id)
        return len(claimed)

    def deliver(self, delivery_id: str, attempt: int) -> None:
        with self.db.session() as s:
            d = s.get(AutomationDelivery, delivery_id)
            rule = s.get(Automation, d.automation_id) if d is not None else None
            if d is None or rule is None:
                return  # the rule was deleted meanwhile, its outbox with it
            action = rule.actions[d.action_index]
            if action["type"] != "notify":
                run = s.get(t.FlowRun, d.flow_run_id) if d.flow_run_id else None
                try:
                    actions.act(s, action, run, delivery_id)
                except NBFlowsError as err:
                    error = err.message
                else:
                    self._record(s, delivery_id, attempt, None)
                    return
        if action["type"] != "notify":
            # The action's changes were rolled back with its transaction; it cannot succeed
            # by trying again (the run ended, the deployment is gone), so it is final.
            with self.db.session() as s:
                self._record(s, delivery_id, attempt, error, final=True)
            log.info("nbflows automation '%s': %s failed: %s", rule.name, d.target, error)
            return
        failure: str | None = None
        with self.db.session() as s:
            facts = templates.event_facts(s, d, rule.name, self.settings.dashboard_url)
            try:
                hidden = channels.resolve_secrets(s, rule.credentials[d.action_index])
            except NBFlowsError as err:  # a secret deleted (or a key changed) since
                failure = err.message
        if failure is None:
            try:
                actions.notify(action, hidden, facts)
            except DeliveryFailed as err:
                failure = str(err)
        with self.db.session() as s:
            self._record(s, delivery_id, attempt, failure)
        if failure:
            log.info(
                "nbflows automation '%s': notifying %s failed: %s", rule.name, d.target, failure
            )

    def _record(
        self, s: Session, delivery_id: str, attempt: int, error: str | None, final: bool = False
    ) -> None:
        outbox.record(
            s,
            delivery_id,
            attempt,
            error,
            retry_delay=self.settings.retry_delay,
            max_attempts=self.settings.max_attempts,
            final=final,
        )


class DeliveryLoop:
    """Runs `Deliverer.deliver_due` on its own threads from the server's event loop."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer
        self.wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nbflows-delivery")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nbflows-delivery")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            claimed = 0
            try:
                claimed = await loop.run_in_executor(self._executor, self.deliverer.deliver_due)
            except Exception:  # keep delivering; the next look may succeed
                log.exception("nbflows delivery pass failed")
            if claimed:
                continue  # there may be more due right now
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.deliverer.settings.poll_interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A delivery in flight finishes on its thread (bounded by its timeouts); not awaited.
        self._executor.shutdown(wait=False, cancel_futures=True)
