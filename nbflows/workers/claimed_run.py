"""A run a worker claimed (`ClaimedRun`), how its execution ended (`Outcome`), the deployment
notebooks a worker has read (`DeploymentNotebooks`), and the worker's records of a run it is
executing and of a pool it serves.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

#: Frozen notebooks of this many (deployment, version) pairs are kept in memory.
NOTEBOOK_CACHE_SIZE = 32

EndState = Literal["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


@dataclass(frozen=True)
class ClaimedRun:
    """A run this worker claimed: what `POST work_pools/{pool}/claim` answered for it."""

    pool: str
    flow_run: dict[str, Any]
    deployment: dict[str, Any] | None
    #: The pool's base job template rendered with `job_variables` (what the run executes with).
    job_configuration: dict[str, Any]
    job_variables: dict[str, Any]
    #: The claim's fencing token: the worker's reports about the run carry it.
    fence: int | None = None
    #: The attempt's own credential, the only one its kernel gets (`nbflows.services.credentials`).
    run_token: str | None = None

    @classmethod
    def from_json(cls, pool: str, data: Mapping[str, Any]) -> ClaimedRun:
        return cls(
            pool=pool,
            flow_run=dict(data["flow_run"]),
            deployment=dict(data["deployment"]) if data.get("deployment") else None,
            job_configuration=dict(data.get("job_configuration") or {}),
            job_variables=dict(data.get("job_variables") or {}),
            fence=data.get("fence"),
            run_token=data.get("run_token"),
        )

    @property
    def id(self) -> str:
        return str(self.flow_run["id"])

    @property
    def label(self) -> str:
        """`name (id)` of the run and, when it has one, its deployment."""
        text = f"run {self.flow_run.get('name')} ({self.id})"
        if self.flow_run.get("deployment_name"):
            text += f" of {self.flow_run['deployment_name']}"
        return text

    @property
    def deployment_version(self) -> int | None:
        """The deployment version the run was claimed with (the deployment's current one when
        the run does not say)."""
        version = self.flow_run.get("deployment_version") or (self.deployment or {}).get("version")
        return int(version) if version is not None else None


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as `run()` reports it.

    `notebook` is the executed notebook (nbformat JSON) to store with the run, if there is one;
    `output_dir` a folder on this machine holding the files the run wrote under its output
    folder (`NBFLOWS_OUTPUT_DIR`): kept as the run's artifacts, then removed.
    """

    state: EndState
    message: str = ""
    notebook: Mapping[str, Any] | None = None
    output_dir: str | None = None


NotebookT = TypeVar("NotebookT")


class DeploymentNotebooks(Generic[NotebookT]):
    """The deployment notebooks a worker has read, by (deployment id, version): a version's
    notebook never changes, so runs of the same version read it once. Thread-safe; keeps the
    `NOTEBOOK_CACHE_SIZE` most recently used."""

    def __init__(self) -> None:
        self._notebooks: OrderedDict[tuple[str, int | None], NotebookT] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, claimed: ClaimedRun, load: Callable[[str, int | None], NotebookT]) -> NotebookT:
        """The notebook of the version `claimed` runs, from `load(deployment_id, version)` when
        it is not kept yet; what `load` raises propagates and nothing is kept."""
        key = (str((claimed.deployment or {})["id"]), claimed.deployment_version)
        with self._lock:
            cached = self._notebooks.get(key)
            if cached is not None:
                self._notebooks.move_to_end(key)
                return cached
        notebook = load(*key)
        with self._lock:
            self._notebooks[key] = notebook
            while len(self._notebooks) > NOTEBOOK_CACHE_SIZE:
                self._notebooks.popitem(last=False)
        return notebook


@dataclass(eq=False)
class ActiveRun:
    claimed: ClaimedRun
    cancel_event: threading.Event = field(default_factory=threading.Event)
    #: Why the worker itself stopped the run (shutdown); None for a user's cancellation.
    stop_reason: str | None = None
    #: A user asked to cancel the run (the server said so): it ends CANCELLED, never handed back.
    cancelled_by_user: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class ServedPool:
    name: str
    queues: list[str] | None
    stopped: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def alive(self) -> bool:
        return not self.stopped.is_set() and all(t.is_alive() for t in self.threads)
