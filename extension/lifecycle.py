"""Background work the server owns: the scheduler loop and the embedded worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from nbflows import protocol
from nbflows.automations import triggers
from nbflows.errors import NotFound
from nbflows.extension.orchestrator import Orchestrator
from nbflows.results.retention import RetentionPolicy, apply_policies
from nbflows.scheduling import scheduler as scheduling
from nbflows.services import credentials, heartbeats
from nbflows.store.db import begin_write

log = logging.getLogger("nbflows")


def scheduler_pass(s: Session, worker_ttl: float = heartbeats.OFFLINE_WORKER_TTL) -> set[str]:
    """One pass; returns the wake-up topics of what changed: `pool:<id>` for pools whose
    claimable runs changed, `run:<id>` for pipeline runs whose state changed."""
    # One scheduler leader at a time across servers sharing a PostgreSQL database.
    postgres = s.get_bind().dialect.name == "postgresql"
    if postgres and not s.execute(text("SELECT pg_try_advisory_xact_lock(7262350)")).scalar():
        return set()
    begin_write(s)  # SQLite: no claim or state change between this pass's reads and writes
    # Pipelines first: a due pipeline run starts its steps before it could be called Late.
    pools, pipeline_runs = scheduling.advance_pipelines(s)
    changed: set[str] = set(pools)
    for result in (scheduling.schedule_runs(s), scheduling.mark_late_runs(s)):
        changed |= result.pools or set()
    changed |= heartbeats.settle_stuck_runs(s, worker_ttl)
    triggers.detect_conditions(s)  # late, running too long, no worker: once per event
    return {f"pool:{pool_id}" for pool_id in changed} | {f"run:{r}" for r in pipeline_runs}


def retention_pass(s: Session, orch: Orchestrator, policy: RetentionPolicy) -> int:
    """Apply the retention policies (one server at a time on PostgreSQL); runs removed."""
    postgres = s.get_bind().dialect.name == "postgresql"
    if postgres and not s.execute(text("SELECT pg_try_advisory_xact_lock(7262351)")).scalar():
        return 0
    return apply_policies(s, orch.results, policy)


class SchedulerLoop:
    def __init__(
        self,
        orch: Orchestrator,
        interval: float,
        retention: RetentionPolicy | None = None,
        retention_interval: float = 300.0,
        worker_ttl: float = heartbeats.OFFLINE_WORKER_TTL,
    ) -> None:
        self.orch = orch
        self.interval = interval
        self.retention = retention or RetentionPolicy()
        self.retention_interval = retention_interval
        self.worker_ttl = worker_ttl
        self._next_retention = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nbflows-scheduler")

    async def _run(self) -> None:
        while True:
            try:
                changed = await self.orch.call(scheduler_pass, self.worker_ttl)
                self.orch.notifier.notify(*changed)
            except Exception:  # keep scheduling; the next pass may succeed
                log.exception("nbflows scheduler pass failed")
            await self._retention()
            self.orch.scheduler_wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.orch.scheduler_wakeup.wait(), self.interval)

    async def _retention(self) -> None:
        """Every `retention_interval` seconds (removing is slower than scheduling and never
        urgent): the policies of the server and of the deployments."""
        now = asyncio.get_running_loop().time()
        if now < self._next_retention:
            return
        self._next_retention = now + self.retention_interval
        try:
            removed = await self.orch.call(retention_pass, self.orch, self.retention)
        except Exception:  # keep scheduling; the next pass may succeed
            log.exception("nbflows retention pass failed")
            return
        if removed:
            log.info("nbflows retention: removed %d finished runs", removed)
            self._next_retention = now  # more may be due: go on at the next pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def embedded_worker_credential(s: Session, name: str, pool_types: list[str]) -> str:
    """A fresh worker credential for the embedded worker `name` (for every pool of
    `pool_types`); the one its previous process had is revoked."""
    with contextlib.suppress(NotFound):
        credentials.revoke_worker_credential(s, name)
    return credentials.create_worker_credential(s, name, [], pool_types)[1]


class EmbeddedWorker:
    """`nbflows worker start` as a child process: the same worker a remote machine runs, with
    its own worker credential (never the server's token)."""

    def __init__(self, api_url: str, token: str, pool_types: list[str], args: list[str]) -> None:
        self.api_url = api_url
        self.token = token
        self.pool_types = pool_types
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def name_for(api_url: str) -> str:
        """Stable across restarts (so its orphaned runs are recognised), distinct per server."""
        return f"embedded-{socket.gethostname()}-{urlsplit(api_url).port}"

    def start(self) -> None:
        env: dict[str, Any] = {
            k: v
            for k, v in os.environ.items()
            if k not in ("JUPYTER_TOKEN", "NBFLOWS_WORKER_TOKEN")
        }
        env |= {protocol.API_URL_ENV: self.api_url, protocol.API_TOKEN_ENV: self.token}
        cmd = [sys.executable, "-m", "nbflows.cli.app", "worker", "start"]
        for kind in self.pool_types:
            cmd += ["--type", kind]
        # The worker's grace period fits inside the server's wait in `stop`: nothing is killed
        # while a run is still being given its chance to finish.
        cmd += [
            "--name",
            self.name_for(self.api_url),
            "--grace",
            "10",
            "--exit-with-parent",
            *self.args,
        ]
        self.process = subprocess.Popen(cmd, env=env)
        log.info(
            "nbflows embedded worker started (pid %s) for %s pools",
            self.process.pid,
            self.pool_types,
        )

    async def stop(self, grace: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), grace)
        except asyncio.TimeoutError:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)
