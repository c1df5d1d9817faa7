"""Who owns a run container: the labels every run container gets, and the reaping of containers
that no live attempt owns.

**Containers of lost workers.** Every container is labelled with its run, attempt, work pool
(name and id: the id tells apart pools of the same name on other servers sharing the engine) and
worker (name and process). When it starts, and every `REAP_INTERVAL` seconds, a docker worker
looks at the containers of the pools it serves on its engine, and only those, and stops and
removes the ones no live attempt owns (`orphan_reason`): the run is over or at a later attempt or
held by another worker (the server declared a crash), or the worker that started it is a process
of this machine that has ended. Containers kept for inspection (`auto_remove` false) are stopped,
not removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbflows.errors import NBFlowsError, NotFound
from nbflows.workers.base import BaseWorker
from nbflows.workers.claimed_run import ClaimedRun
from nbflows.workers.reporting import RunReporter

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container


__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_DEPLOYMENT",
    "LABEL_FLOW_RUN",
    "LABEL_KEEP",
    "LABEL_WORKER",
    "LABEL_WORKER_PROCESS",
    "LABEL_WORK_POOL",
    "LABEL_WORK_POOL_ID",
    "REAP_INTERVAL",
    "ContainerReaping",
    "orphan_reason",
    "retire",
]
#: Labels every run container gets: its run and attempt, its deployment, its work pool (name,
#: and id: unique to the server's database), the worker that started it (name, and process:
#: "host pid-namespace pid").
LABEL_FLOW_RUN = "org.nbflows.flow-run-id"
LABEL_ATTEMPT = "org.nbflows.attempt"
LABEL_DEPLOYMENT = "org.nbflows.deployment"
LABEL_WORK_POOL = "org.nbflows.work-pool"
LABEL_WORK_POOL_ID = "org.nbflows.work-pool-id"
LABEL_WORKER = "org.nbflows.worker"
LABEL_WORKER_PROCESS = "org.nbflows.worker-process"
#: Set on containers kept for inspection (`auto_remove` false): reaping stops them, keeps them.
LABEL_KEEP = "org.nbflows.keep"
#: Seconds between two looks for containers that no live attempt owns.
REAP_INTERVAL = 5.0
#: Seconds a stopped container gets to save its notebook before it is killed.
STOP_TIMEOUT = 10
_LIVE_CONTAINER = frozenset({"created", "running", "restarting", "paused"})
#: Run states in which a run's current attempt may own a container.
_ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CANCELLING", "PAUSED"})


# --------------------------------------------------------------------------------------------
# Worker-side helpers


def orphan_reason(
    labels: Mapping[str, str], run: Mapping[str, Any] | None, *, worker: str, process: str
) -> str | None:
    """Why no live attempt owns the container with `labels`, or None when one may.

    `run` is the container's run as the API has it now (None: it no longer exists); `worker`
    and `process` are those of the worker judging (see `LABEL_WORKER_PROCESS`). Containers of
    the judging worker's own current attempts are never judged.
    """
    if run is None:
        return "its run no longer exists"
    state = str((run.get("state") or {}).get("type"))
    if state not in _ACTIVE_STATES:
        return f"its run is {state}"
    attempt, current = labels.get(LABEL_ATTEMPT), str(run.get("attempt"))
    if attempt != current:
        return f"attempt {attempt} is over: the run is at attempt {current}"
    holder, owner = labels.get(LABEL_WORKER), run.get("worker_name")
    if owner != holder:
        return f"the run is held by {f'worker {owner!r}' if owner else 'no worker'} now"
    if holder == worker:
        return f"worker {worker!r} (restarted) does not run it any more"
    ended = _ended_process(labels.get(LABEL_WORKER_PROCESS, ""), process)
    if ended is not None:
        return f"worker {holder!r} is gone: its process {ended} on this machine has ended"
    return None


def this_process() -> str:
    """This process as `LABEL_WORKER_PROCESS` says it: host name, pid namespace, pid."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace} {os.getpid()}"


def _ended_process(labelled: str, here: str) -> int | None:
    """The pid of `labelled` when it is a process of this machine (same host name and pid
    namespace) that no longer exists; None when it lives, or when this cannot be known here."""
    try:
        host, namespace, pid = labelled.split(" ")
        my_host, my_namespace, _ = here.split(" ")
        number = int(pid)
    except ValueError:
        return None
    if not namespace or (host, namespace) != (my_host, my_namespace):
        return None
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return number
    except OSError:  # exists, owned by another user
        return None
    return None


def retire(container: Container, why: str, worker: str) -> str | None:
    """Stop `container` if it runs and remove it unless it is kept; what was done, or None
    when it was gone already or someone else (the reaper, another worker) removed it meanwhile.
    Returns only once the container no longer runs: a retry waits for the attempt it replaces."""
    import docker

    labels = container.labels
    attempt = labels.get(LABEL_ATTEMPT, "?")
    running = container.status in _LIVE_CONTAINER
    keep = bool(labels.get(LABEL_KEEP))
    try:
        if running:
            container.stop(timeout=STOP_TIMEOUT)
        if not keep:
            container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: "removal ... is already in progress"
            raise
        _wait_removed(container)
        return None
    done = "stopped" if running else ""
    if not keep:
        done = f"{done} and removed" if done else "removed"
    elif not running:
        return None
    state = "was still running" if running else "had ended"
    return (
        f"container {container.name} of attempt {attempt} {state} ({why}): worker "
        f"'{worker}' {done} it" + (" (kept: auto_remove is false)" if keep else "")
    )


def _wait_removed(container: Container) -> None:
    """Wait for a removal another caller started to finish (it has stopped the container)."""
    import docker

    deadline = time.monotonic() + STOP_TIMEOUT + 30
    while time.monotonic() < deadline:
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        time.sleep(0.2)
    raise TimeoutError(
        f"container {container.name} was still being removed after {STOP_TIMEOUT + 30} s"
    )


class ContainerReaping(BaseWorker):
    """The part of a docker worker that finds and retires the containers no live attempt owns:
    every `REAP_INTERVAL` seconds on a thread, and for a run's earlier attempts before a new
    attempt starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._process = this_process()
        #: (run id, attempt) of the containers this worker runs or is about to create.
        self._mine: set[tuple[str, str]] = set()
        self._mine_lock = threading.Lock()
        self._pool_ids: dict[str, str] = {}
        self._reaper_stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def _pool_id(self, claimed: ClaimedRun) -> str:
        """The id of the claimed run's pool (told apart from pools of the same name elsewhere)."""
        known = self._pool_ids.get(claimed.pool)
        if known is None:
            known = str(self.client.read_work_pool(claimed.pool)["id"])
            self._pool_ids[claimed.pool] = known
        return known

    def _stop_earlier_attempts(
        self,
        engine: docker.DockerClient,
        claimed: ClaimedRun,
        labels: Mapping[str, str],
        reporter: RunReporter,
    ) -> None:
        """Stop (and remove) every container of this run that is not the one about to start:
        an earlier attempt whose worker was lost may still run on this engine."""
        same_run = [
            f"{LABEL_FLOW_RUN}={claimed.id}",
            f"{LABEL_WORK_POOL_ID}={labels[LABEL_WORK_POOL_ID]}",
        ]
        for container in engine.containers.list(all=True, filters={"label": same_run}):
            attempt = labels[LABEL_ATTEMPT]
            said = self._retire(container, f"attempt {attempt} is about to start")
            if said:
                reporter.log(said, logging.WARNING)

    def _reap_loop(self) -> None:
        failing = False
        while True:
            try:
                self.reap()
                failing = False
            except Exception as exc:  # the engine or the server is away: look again later
                if not failing:
                    self.say(f"looking for containers of lost workers failed: {exc}; retrying")
                failing = True
            if self._reaper_stop.wait(REAP_INTERVAL):
                return

    def reap(self) -> list[str]:
        """Stop and remove the containers of this worker's pools, on its engine, that no live
        attempt owns; returns what was said about each (also in the worker's output and, when
        the run exists, in the run's log)."""
        import docker

        pools = {
            str(p["id"]): str(p["name"])
            for p in self.client.list_work_pools()
            if p.get("type") == self.type and (self.pools is None or p.get("name") in self.pools)
        }
        self._pool_ids.update({name: pool_id for pool_id, name in pools.items()})
        said: list[str] = []
        engine = docker.from_env()
        try:
            for pool_id in pools:
                filters = {"label": f"{LABEL_WORK_POOL_ID}={pool_id}"}
                for container in engine.containers.list(all=True, filters=filters):
                    line = self._reap_one(container)
                    if line:
                        said.append(line)
        finally:
            engine.close()
        return said

    def _reap_one(self, container: Container) -> str | None:
        labels = container.labels
        run_id = labels.get(LABEL_FLOW_RUN, "")
        with self._mine_lock:
            if labels.get(LABEL_WORKER) == self.name and (
                (run_id, labels.get(LABEL_ATTEMPT, "")) in self._mine
            ):
                return None
        if labels.get(LABEL_KEEP) and container.status not in _LIVE_CONTAINER:
            return None  # kept for inspection, and not running
        try:
            run: dict[str, Any] | None = self.client.read_flow_run(run_id)
        except NotFound:
            run = None
        except NBFlowsError:
            return None  # the server cannot say: nothing is decided without it
        why = orphan_reason(labels, run, worker=self.name, process=self._process)
        if why is None:
            return None
        said = self._retire(container, why)
        if said:
            self.say(said)
            if run is not None:
                with contextlib.suppress(NBFlowsError):  # said on the worker's output already
                    self.client.write_logs(
                        run_id, [{"message": said, "level": logging.WARNING, "source": "worker"}]
                    )
        return said

    def _retire(self, container: Container, why: str) -> str | None:
        return retire(container, why, self.name)
