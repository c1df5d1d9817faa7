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

import contextlib
import logging
import shutil
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from nbflows.client.rest import Client
from nbflows.errors import Conflict, NBFlowsError, NotFound
from nbflows.services import secrets
from nbflows.services.secrets import Masker
from nbflows.workers import job_templates
from nbflows.workers.reporting import LogShipper, RunReporter, ServerLink, unreachable

__all__ = [
    "CLAIM_WAIT",
    "DEFAULT_GRACE",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_LIMIT",
    "POOL_REFRESH_INTERVAL",
    "BaseWorker",
    "ClaimedRun",
    "DeploymentNotebooks",
    "Outcome",
    "default_worker_name",
]

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
#: Frozen notebooks of this many (deployment, version) pairs are kept in memory.
NOTEBOOK_CACHE_SIZE = 32
#: How long cancelled runs may take to stop when the worker shuts down before they are given up.
CANCEL_TIMEOUT = 30.0

EndState = Literal["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]

_END_LEVELS = {
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
class _ActiveRun:
    claimed: ClaimedRun
    cancel_event: threading.Event = field(default_factory=threading.Event)
    #: Why the worker itself stopped the run (shutdown); None for a user's cancellation.
    stop_reason: str | None = None
    #: A user asked to cancel the run (the server said so): it ends CANCELLED, never handed back.
    cancelled_by_user: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _ServedPool:
    name: str
    queues: list[str] | None
    stopped: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def alive(self) -> bool:
        return not self.stopped.is_set() and all(t.is_alive() for t in self.threads)


class BaseWorker:
    """Claims due runs of its pools and executes them; subclasses implement `run()`.

    `pools=None` serves every pool of the worker's `type`, including pools created while it
    runs. `queues` restricts claiming to those queues (in pools that have them). At most
    `limit` runs execute at once. `echo` receives the lines a person watching the worker reads.
    Without a `name`, the worker takes `default_worker_name(type)`.
    """

    #: The work pool type this worker executes runs for (the `nbflows.workers` entry point name).
    type: ClassVar[str] = ""
    #: The JSON schema of the job variables of this pool type's default base job template
    #: (each exposed to `run()` under its own name). A plug-in may declare its own.
    job_variables: ClassVar[Mapping[str, Any]] = job_templates.COMMON_VARIABLES

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
        self._echo = echo or _print
        self._echo_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_now = threading.Event()
        #: Set when reports still waiting for the server are to be dropped (the worker exits).
        self._give_up = threading.Event()
        self._stop_reason = "the worker was stopped"
        self._last_refusal = ""
        self._served: dict[str, _ServedPool] = {}
        self._active: dict[str, _ActiveRun] = {}
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

    def say(self, message: str) -> None:
        """One line for the person watching the worker."""
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._echo_lock:
            self._echo(f"{stamp} | {message}")

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
            self._start_serving(_ServedPool(name, queues))

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

    def _start_serving(self, pool: _ServedPool) -> None:
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

    def _claim_loop(self, pool: _ServedPool) -> None:
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

    def _wait_for_free_slots(self, pool: _ServedPool) -> int:
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
                active = _ActiveRun(claimed)
                self._active[claimed.id] = active
        if refused is not None:
            self._hand_back(claimed, refused)
            return
        threading.Thread(
            target=self._execute, args=(active,), name=f"nbflows-run-{claimed.id}", daemon=True
        ).start()

    def _hand_back(self, claimed: ClaimedRun, reason: str) -> None:
        """Give a run this worker will not start back to the server (the server hands it back
        itself if this cannot be said)."""
        message = f"handed back by worker '{self.name}' before it started ({reason})"
        try:
            self._report(claimed, "SCHEDULED", message, patient=False)
        except Conflict:
            self._settle_unstarted(claimed)

    def _settle_unstarted(self, claimed: ClaimedRun) -> None:
        """A run this worker claimed but will not start, and that is not PENDING any more."""
        try:
            run = self.client.read_flow_run(claimed.id)
        except NBFlowsError:
            return
        if (run.get("state") or {}).get("type") == "CANCELLING":
            with contextlib.suppress(Conflict):
                self._report(claimed, "CANCELLED", "cancelled before it started")

    # -- executing one run ----------------------------------------------------------------------

    def _execute(self, active: _ActiveRun) -> None:
        claimed = active.claimed
        assert self._shipper is not None
        live = claimed.job_configuration.get("stream_output") is not False
        problem: str | None = None
        try:
            claimed, masker = self._with_secrets(claimed)
        except NBFlowsError as exc:
            masker, problem = Masker(()), f"its secrets could not be resolved: {exc}"
        reporter = RunReporter(
            self._shipper, claimed.id, live=live, fence=claimed.fence, masker=masker
        )
        outcome: Outcome | None = None
        try:
            if not self._begin(active):
                return
            self.say(f"{claimed.label} started")
            if problem is not None:
                outcome = Outcome("FAILED", problem)
            else:
                outcome = self.run(claimed, reporter, active.cancel_event)
        except Exception as exc:
            outcome = Outcome(
                "CRASHED", f"the worker failed while running the flow: {type(exc).__name__}: {exc}"
            )
            reporter.log(traceback.format_exc().rstrip(), logging.ERROR)
        finally:
            try:
                if outcome is not None:
                    self._finish(active, reporter, outcome)
                else:
                    reporter.close()
            finally:
                with self._slots:
                    # A retry of the run may have been claimed while this attempt reported.
                    if self._active.get(claimed.id) is active:
                        del self._active[claimed.id]
                    self._slots.notify_all()

    def _with_secrets(self, claimed: ClaimedRun) -> tuple[ClaimedRun, Masker]:
        """`claimed` with the secrets its parameters and job configuration refer to resolved
        (asked of the server now, never kept), and what hides their values again."""
        names = secrets.references(claimed.flow_run.get("parameters"), claimed.job_configuration)
        if not names:
            return claimed, Masker(())
        values = self._patiently(lambda: self.client.read_run_secrets(claimed.id))
        flow_run = dict(claimed.flow_run)
        flow_run["parameters"] = secrets.substitute(flow_run.get("parameters") or {}, values)
        config = secrets.substitute(claimed.job_configuration, values)
        resolved = replace(claimed, flow_run=flow_run, job_configuration=config)
        return resolved, Masker(values.values())

    def _begin(self, active: _ActiveRun) -> bool:
        """PENDING → RUNNING (waiting for the server if it is away); False, and the run settled,
        when it must not start."""
        claimed = active.claimed
        if self._stopping.is_set():
            self._hand_back(claimed, "the worker is stopping")
            return False
        if active.cancel_event.is_set():
            with contextlib.suppress(Conflict):
                self._report(claimed, "CANCELLED", "cancelled before it started")
            return False
        try:
            if self._report(claimed, "RUNNING", None) is None:
                return False  # the server stayed away until the worker had to exit
        except Conflict:
            self._settle_unstarted(claimed)
            return False
        return True

    def _finish(self, active: _ActiveRun, reporter: RunReporter, outcome: Outcome) -> None:
        """Logs, then the executed notebook, then the final state: a watcher that sees the run
        end finds everything else there already. While the server is away each waits for it:
        an attempt's result is not dropped because the server was restarting."""
        claimed = active.claimed
        state: str = outcome.state
        message = outcome.message
        hand_back = (
            state == "CANCELLED" and active.stop_reason is not None and not active.cancelled_by_user
        )
        if hand_back:
            if outcome.output_dir is not None:  # the next attempt writes its own
                shutil.rmtree(outcome.output_dir, ignore_errors=True)
            reporter.log(f"stopped: {active.stop_reason}; the run is handed back", logging.WARNING)
            reporter.close()
            note = (
                f"handed back by worker '{self.name}' ({active.stop_reason}; it was still running "
                f"after the {self.grace:g} s grace)"
            )
            final = self._report_end(claimed, "SCHEDULED", note)
            self._say_end(active, "SCHEDULED", final, "handed back")
            return
        if state == "CANCELLED" and active.stop_reason:
            message = f"{active.stop_reason}: {message}" if message else active.stop_reason
        reporter.log(f"{state}: {message}" if message else state, _END_LEVELS[state])
        message = reporter.masker.text(message)
        if outcome.notebook is not None:
            from nbflows.workers.run_exports import send_exports

            notebook = reporter.masker.json(outcome.notebook)
            self._store_notebook(claimed, reporter, notebook)
            send_exports(self, claimed, reporter, notebook)
        if outcome.output_dir is not None:
            self._store_artifacts(claimed, reporter, outcome.output_dir)
        reporter.close(state)
        final = self._report_end(claimed, state, message)
        first_line = message.splitlines()[0] if message else ""
        self._say_end(active, state, final, first_line if state != "COMPLETED" else "")

    def _say_end(
        self, active: _ActiveRun, state: str, final: dict[str, Any] | None, note: str
    ) -> None:
        took = time.monotonic() - active.started
        summary = (final.get("state") or {}).get("type", state) if final else state
        if final and summary == "SCHEDULED" and state != "SCHEDULED":
            summary = f"{state}, will be retried"
        self.say(
            f"{active.claimed.label} ended {summary} in {took:.2f} s"
            + (f": {note}" if note else "")
        )

    def _store_notebook(
        self, claimed: ClaimedRun, reporter: RunReporter, notebook: Mapping[str, Any]
    ) -> None:
        def store() -> Any:
            return self.client.write_flow_run_notebook(
                claimed.id, notebook, worker=self.name, fence=claimed.fence
            )

        try:
            self._patiently(store)
        except Conflict as exc:
            reporter.log(f"the executed notebook was refused: {exc}", logging.WARNING)
        except NBFlowsError as exc:
            reporter.log(f"could not store the executed notebook: {exc}", logging.WARNING)

    def _store_artifacts(self, claimed: ClaimedRun, reporter: RunReporter, folder: str) -> None:
        """Send every file the run left in its output folder, then remove the folder. A file
        the server refuses (over a size limit) is named in the run's log with the reason."""
        from nbflows.results.artifacts import collect_output_folder

        kept = 0
        try:
            for name, path in collect_output_folder(folder):
                data = path.read_bytes()

                def store(name: str = name, data: bytes = data) -> Any:
                    return self.client.write_flow_run_artifact(
                        claimed.id, name, data, worker=self.name, fence=claimed.fence
                    )

                try:
                    self._patiently(store)
                    kept += 1
                except NBFlowsError as exc:
                    reporter.log(f"artifact '{name}' was not kept: {exc}", logging.WARNING)
                    if isinstance(exc, Conflict):
                        return  # the run is not this worker's any more
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if kept:
            reporter.log(f"kept {kept} artifact{'s' if kept != 1 else ''} of the run")

    def _report_end(self, claimed: ClaimedRun, state: str, message: str) -> dict[str, Any] | None:
        try:
            return self._report(claimed, state, message or None)
        except Conflict:
            pass
        # The run changed under this worker: cancellation was asked for as it ended, or the
        # server gave the run up (the worker was silent too long) and it is not ours any more.
        try:
            run = self.client.read_flow_run(claimed.id)
        except NBFlowsError:
            return None
        current = (run.get("state") or {}).get("type")
        if current == "CANCELLING" and run.get("worker_name") == self.name:
            note = f"cancellation was requested as the run ended {state}"
            with contextlib.suppress(Conflict):
                return self._report(claimed, "CANCELLED", f"{note}: {message}" if message else note)
        self.say(
            f"{claimed.label} ended {state} here; the server has the run {current} now "
            f"(attempt {run.get('attempt')}, worker {run.get('worker_name')})"
        )
        return run

    def _report(
        self, claimed: ClaimedRun, state: str, message: str | None, *, patient: bool = True
    ) -> dict[str, Any] | None:
        """Report a state of a run this worker holds; `Conflict` once it holds it no more.
        While the server is away: wait for it (`patient`), or give up at once. None when the
        report could not be made."""

        def send() -> dict[str, Any]:
            return self.client.set_flow_run_state(
                claimed.id, state, message=message, worker=self.name, fence=claimed.fence
            )

        try:
            return self._patiently(send) if patient else send()
        except Conflict:
            raise
        except NotFound:
            return None
        except NBFlowsError as exc:
            self._failed(exc)
            self.say(f"could not report {claimed.label} {state}: {exc}")
            return None

    def _patiently(self, request: Callable[[], Any]) -> Any:
        """`request()`, sent again with backoff while the server is away, until it answers
        (or the worker gives up waiting when it must exit)."""
        delay = 0.2
        while True:
            try:
                answer = request()
            except NBFlowsError as exc:
                if not unreachable(exc) or self._give_up.is_set():
                    raise
                self.link.failed(exc)
                if self._give_up.wait(delay):
                    raise
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.link.ok()
            return answer

    # -- heartbeats and cancellation ------------------------------------------------------------

    def _heartbeat_loop(self, pool: _ServedPool) -> None:
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
        self, pool: _ServedPool, wait: float = 0, sent: dict[str, int | None] | None = None
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


def _print(line: str) -> None:
    print(line, flush=True)
