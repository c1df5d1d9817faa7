"""Who owns a run container: the labels every run container gets (run, attempt, deployment,
work pool, worker) and, from them, which containers no live attempt owns (`orphan_reason`), so
a docker worker may stop and remove the containers of lost workers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_DEPLOYMENT",
    "LABEL_FLOW_RUN",
    "LABEL_KEEP",
    "LABEL_WORKER",
    "LABEL_WORKER_PROCESS",
    "LABEL_WORK_POOL",
    "LABEL_WORK_POOL_ID",
    "orphan_reason",
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
