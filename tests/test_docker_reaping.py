"""Which run containers no live attempt owns: the docker worker's verdict from a container's labels
and its run as the API has it (no engine needed; the Docker tests reap real containers)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from nbflows.workers.container_ownership import (
    LABEL_ATTEMPT,
    LABEL_WORKER,
    LABEL_WORKER_PROCESS,
    _ended_process,
    orphan_reason,
    this_process,
)

ME = "docker-worker-b"


def a_run(state: str = "RUNNING", attempt: int = 1, worker: str | None = "docker-worker-a") -> Any:
    return {"state": {"type": state}, "attempt": attempt, "worker_name": worker}


def a_dead_process() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def labels(worker: str = "docker-worker-a", attempt: str = "1", process: str = "") -> Any:
    return {LABEL_WORKER: worker, LABEL_ATTEMPT: attempt, LABEL_WORKER_PROCESS: process}


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (None, "its run no longer exists"),
        (a_run("COMPLETED"), "its run is COMPLETED"),
        (a_run("SCHEDULED", attempt=2, worker=None), "its run is SCHEDULED"),
        (a_run(attempt=2), "attempt 1 is over: the run is at attempt 2"),
        (a_run(worker="docker-worker-c"), "the run is held by worker 'docker-worker-c' now"),
        (a_run(worker=None), "the run is held by no worker now"),
    ],
)
def test_a_container_whose_attempt_is_not_live_is_an_orphan(run: Any, reason: str) -> None:
    assert orphan_reason(labels(), run, worker=ME, process=this_process()) == reason


def test_a_live_attempt_keeps_its_container_unless_its_worker_process_has_ended() -> None:
    here = this_process()
    host, namespace, _ = here.split(" ")
    alive = labels(process=here)
    assert orphan_reason(alive, a_run(), worker=ME, process=here) is None
    assert orphan_reason(labels(process=""), a_run(), worker=ME, process=here) is None

    dead = a_dead_process()
    gone = labels(process=f"{host} {namespace} {dead}")
    assert orphan_reason(gone, a_run(), worker=ME, process=here) == (
        f"worker 'docker-worker-a' is gone: its process {dead} on this machine has ended"
    )
    # On another machine, or in another pid namespace, a pid says nothing: the API decides.
    for elsewhere in (f"other-host {namespace} {dead}", f"{host} pid:[1] {dead}"):
        assert _ended_process(elsewhere, here) is None
    # A worker restarted under the same name no longer runs its earlier process's containers.
    mine = labels(worker=ME, process=f"{host} {namespace} {os.getpid()}")
    assert orphan_reason(mine, a_run(worker=ME), worker=ME, process=here) == (
        f"worker '{ME}' (restarted) does not run it any more"
    )


def test_this_process_is_named_by_host_pid_namespace_and_pid() -> None:
    host, namespace, pid = this_process().split(" ")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert namespace == os.readlink("/proc/self/ns/pid")


@pytest.mark.docker
def test_two_retirements_of_one_container_at_once_both_end_with_it_gone() -> None:
    """The reaper and a starting retry may retire the same earlier attempt's container together:
    the engine answers the later removal 409 "already in progress"; neither may fail (a failure
    crashed the retry), and both return only once the container is gone."""
    from nbflows.workers.container_ownership import LABEL_FLOW_RUN, retire

    from .docker_support import docker_client, local_base_image

    engine = docker_client()
    image = local_base_image(engine)
    for _ in range(3):
        run_id = uuid.uuid4().hex
        created = engine.containers.run(
            image,
            ["sleep", "600"],
            detach=True,
            init=True,  # SIGTERM ends `sleep` at once: the stops return together
            labels={LABEL_FLOW_RUN: run_id, LABEL_ATTEMPT: "1"},
        )
        try:
            twins = [engine.containers.get(created.id) for _ in range(2)]
            with ThreadPoolExecutor(2) as pool:
                retiring = [pool.submit(retire, c, "a test", "docker-worker-b") for c in twins]
                said = [r.result(timeout=120) for r in retiring]
            assert any(s and "stopped and removed" in s for s in said), said
            assert (
                engine.containers.list(all=True, filters={"label": f"{LABEL_FLOW_RUN}={run_id}"})
                == []
            )
        finally:
            with contextlib.suppress(Exception):
                created.remove(force=True)
