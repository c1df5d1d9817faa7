"""A worker's settings and shared state (`WorkerState`), the defaults of its settings, and its
default name. The layers of `BaseWorker` build on it: `RunExecution`, `Supervision`,
`PoolClaiming`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from nbflows.client.rest import Client
from nbflows.workers.claimed_run import (
    ActiveRun,
    ClaimedRun,
    Outcome,
    ServedPool,
)
from nbflows.workers.job_variables import COMMON_VARIABLES
from nbflows.workers.reporting import LogShipper, RunReporter, ServerLink, unreachable

#: Runs one worker executes at the same time unless `--limit` says otherwise.
DEFAULT_LIMIT = 4
#: Seconds between heartbeats; the server declares the worker lost after 3 missed ones.
DEFAULT_HEARTBEAT_INTERVAL = 5.0
#: Seconds running runs may take to finish after a stop request before they are cancelled.
DEFAULT_GRACE = 30.0
#: How long one claim request waits on the server for a run (it answers as soon as one is due).
CLAIM_WAIT = 20.0
#: Seconds between two looks at which pools exist (pools created later get served).
POOL_REFRESH_INTERVAL = 2.0
#: Longest wait between two tries while the server cannot be reached.
MAX_BACKOFF = 5.0
#: Seconds between two tries to set up a pool type's infrastructure that was missing.
SETUP_RETRY = 30.0
#: After a stop, how long reports still waiting for the server are kept trying.
REPORT_WAIT_AT_EXIT = 30.0
#: How long cancelled runs may take to stop when the worker shuts down before they are given up.
CANCEL_TIMEOUT = 30.0

#: An executed notebook up to this many bytes of JSON goes with the run's end state in one
#: request (`RunExecution._end_at_once`); a bigger one is sent as it is, on its own.
END_AT_ONCE_SIZE = 1024 * 1024

END_LEVELS = {
    "COMPLETED": logging.INFO,
    "CANCELLED": logging.WARNING,
    "FAILED": logging.ERROR,
    "CRASHED": logging.ERROR,
}


def default_worker_name(pool_type: str) -> str:
    """The same name every time on this machine, so a restarted worker takes over what its
    previous process held (and rows do not pile up); `serve()` adds `-2`, `-3`... when a worker
    of that name is online already."""
    return f"{pool_type}-worker-{socket.gethostname()}"


def print_line(line: str) -> None:
    print(line, flush=True)


class WorkerState:
    """What every part of a worker shares: its settings, the events its threads watch, its link to
    the server, and the hooks a pool type implements (`setup`, `run`, `teardown`, ...)."""

    #: The work pool type this worker executes runs for (the `nbflows.workers` entry point name).
    type: ClassVar[str] = ""
    #: The JSON schema of the job variables of this pool type's default base job template
    #: (each exposed to `run()` under its own name). A plug-in may declare its own.
    job_variables: ClassVar[Mapping[str, Any]] = COMMON_VARIABLES

    def __init__(
        self,
        client: Client,
        *,
        name: str | None = None,
        pools: list[str] | None = None,
        queues: list[str] | None = None,
        limit: int = DEFAULT_LIMIT,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        grace: float = DEFAULT_GRACE,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit}")
        self.client = client
        self._named = name is not None
        self.name = name or default_worker_name(self.type)
        self.pools = list(pools) if pools else None
        self.queues = list(queues) if queues else None
        self.limit = limit
        self.heartbeat_interval = heartbeat_interval
        self.grace = grace
        self._echo = echo or print_line
        self._echo_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_now = threading.Event()
        #: Set when reports still waiting for the server are to be dropped (the worker exits).
        self._give_up = threading.Event()
        self._stop_reason = "the worker was stopped"
        self._last_refusal = ""
        self._served: dict[str, ServedPool] = {}
        self._active: dict[str, ActiveRun] = {}
        self._slots = threading.Condition()
        self.link = ServerLink(client, self.say)
        self._shipper: LogShipper | None = None

    # -- what a pool type implements ------------------------------------------------------------

    def setup(self) -> None:
        """Prepare the infrastructure before the first claim (e.g. start a kernel pool).

        What it raises is shown on the worker's pools as the reason they are not served, and
        `setup()` is tried again every `SETUP_RETRY` seconds."""

    def run(
        self, claimed: ClaimedRun, reporter: RunReporter, cancel_event: threading.Event
    ) -> Outcome:
        """Execute one claimed run to its end and say how it ended.

        Output goes to `reporter` while the run executes. When `cancel_event` is set the run
        must stop promptly (kill what executes it) and return a CANCELLED outcome. An exception
        raised here makes the run CRASHED.
        """
        raise NotImplementedError

    def without_deployment(self) -> Outcome:
        """How a claimed run without a deployment ends: pool types run deployments only."""
        return Outcome(
            "FAILED", f"the run has no deployment: a {self.type} worker has nothing to run"
        )

    def teardown(self) -> None:
        """Release the infrastructure once no run executes any more."""

    def pool_problem(self, pool: str) -> str | None:
        """Why runs of `pool` cannot execute now though the worker is set up (e.g. its cluster
        is unreachable), shown on the pool by the heartbeats; None when they can."""
        return None

    def say(self, message: str) -> None:
        """One line for the person watching the worker."""
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._echo_lock:
            self._echo(f"{stamp} | {message}")

    def _failed(self, exc: BaseException) -> None:
        """A request failed: the server is away, or it answered what we did not expect; each
        said once, not once per retry."""
        if unreachable(exc):
            self.link.failed(exc)
            return
        message = f"the server refused a request: {exc}"
        if message != self._last_refusal:
            self._last_refusal = message
            self.say(message)
