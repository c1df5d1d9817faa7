"""Docker pools: each run executes in a fresh container from the deployment's image.

A run, as `DockerWorker.run` tells it:

1. **The image**: the job variable `image` if set, else the deployment's image (the reference
   `nbflows deploy --image` built). `image_pull_policy` says whether to pull it first: `Never`
   (a missing image ends the run CRASHED with "image X not found locally"), `IfNotPresent`
   (pull only when the engine lacks it), `Always`.
2. **The container** is created, not started yet, with the job configuration applied: `env`,
   `mem_limit` (swap included, so the limit is the limit), `cpus`, `volumes`, `network_mode`,
   `labels`, `privileged`, and `command` (replaces the default runner below).
3. **The run's files go in** with `put_archive`, into `RUN_DIR`: the deployment's frozen notebook
   *as the API stores it for the run's deployment version*, and the run's spec (parameters,
   timeout). The API's copy rather than the one baked into the image, because it is exactly what
   the run records as its code: a run of version 3 runs version 3 even when the `image` job
   variable points at another (say, a team's shared) image, or when the image tag was reused.
   The image's copy (`NBFLOWS_FLOW_NOTEBOOK`) is the fallback when the API cannot give the
   version.
4. **The container starts** and runs `python -m nbflows.workers.docker RUN_DIR/spec.json`
   (`run_in_container` below): the notebook executes with papermill (the nbflows engine of
   `nbflows.execution.engine`) in a kernel inside the container. The run is headless
   (`NBFLOWS_FLOW_RUN_ID`, `NBFLOWS_FLOW_NAME`, `NBFLOWS_RUN_KIND` in its environment): `%%flow`
   cells report through their output, never over the network, so a container needs no path to
   the server. Each output line and each run event is written to the container's stdout as one
   `RECORD_PREFIX` + JSON line; the worker follows the container's output live
   (`logs(stream=True, follow=True)`) and relays lines to the run's log and events to the
   `RunReporter` (which creates the child flow runs). Any other line (a custom `command`, Python
   warnings) is relayed as it is.
5. **The end**: cancellation stops the container (SIGTERM: the runner interrupts the kernel and
   saves the notebook; SIGKILL after `STOP_TIMEOUT`) → CANCELLED; the job's `timeout` is
   enforced inside (the notebook shows the cell that ran too long) and by the worker as a backstop
   → FAILED; a container the kernel ran out of memory in → CRASHED "killed: out of memory";
   otherwise the runner's result (`RUN_DIR/result.json`: completed, or failed with the failing
   cell and exception), else the exit code (0 COMPLETED, non-zero FAILED). The executed notebook
   is copied out (`get_archive`) before the container is removed (`auto_remove`, the default;
   without it the container is kept for inspection).

Before step 2 the worker refuses a job configuration that reaches into the host beyond what
the pool allows (host paths, privileged, host network: `nbflows.workers.job_templates.check_host_access`,
which the server applies at deploy and run time; here symbolic links are judged where they lead
too), and stops any container an earlier attempt of the run left running: a retry never runs
beside the attempt it replaces (on one engine), and the run's log says so.

**Containers of lost workers.** Every container is labelled with its run, attempt, work pool
(name and id: the id tells apart pools of the same name on other servers sharing the engine) and
worker (name and process). When it starts, and every `REAP_INTERVAL` seconds, a docker worker
looks at the containers of the pools it serves on its engine, and only those, and stops and
removes the ones no live attempt owns (`orphan_reason`): the run is over or at a later attempt or
held by another worker (the server declared a crash), or the worker that started it is a process
of this machine that has ended. Containers kept for inspection (`auto_remove` false) are stopped,
not removed.

Docker calls block: they run in the worker's run thread (one engine connection per run), never
on an event loop. `docker` is imported lazily, and the container side imports neither it nor
the worker's client.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import socket
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from nbflows import protocol
from nbflows.errors import NBFlowsError, NotFound
from nbflows.results.artifacts import OUTPUT_DIR_ENV
from nbflows.workers import job_templates
from nbflows.workers.base import BaseWorker, ClaimedRun, DeploymentNotebooks, EndState, Outcome
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
    "RECORD_PREFIX",
    "RUN_DIR",
    "DockerWorker",
    "orphan_reason",
    "run_in_container",
]

#: Folder of the container that holds the run's files: notebook, spec, executed notebook, result.
RUN_DIR = "/nbflows-run"
#: Lines of the container's stdout starting with this carry one JSON record of the runner.
RECORD_PREFIX = "@nbflows "
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
#: Run states in which a run's current attempt may own a container.
_ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CANCELLING", "PAUSED"})
_LIVE_CONTAINER = frozenset({"created", "running", "restarting", "paused"})
#: Seconds a stopped container gets to save its notebook before it is killed.
STOP_TIMEOUT = 10
#: The worker stops a container this many seconds after the job's `timeout` if the runner inside
#: has not stopped by itself (kernel start-up is not part of the timeout).
TIMEOUT_MARGIN = 30.0
#: How often a running container is checked for cancellation, timeout and exit.
POLL_INTERVAL = 0.2
#: Lines of a container's plain output kept to explain an exit that left no result.
_TAIL_LINES = 20

#: Exit codes of `run_in_container`, by execution status.
EXIT_CODES = {"completed": 0, "failed": 1, "crashed": 70, "cancelled": 130}
_STATES: dict[str, EndState] = {
    "completed": "COMPLETED",
    "failed": "FAILED",
    "crashed": "CRASHED",
    "cancelled": "CANCELLED",
}
_SPEC = "spec.json"
_NOTEBOOK = "flow.ipynb"
_OUTPUT = "output.ipynb"
_RESULT = "result.json"
#: The run's output folder inside the container (`NBFLOWS_OUTPUT_DIR`): copied out after the
#: run with `get_archive`, so artifacts need no host mount.
OUTPUT_DIR = f"{RUN_DIR}/output"
# Pull progress of single layers is noise in a run's log; the other statuses are kept.
_PULL_NOISE = re.compile(r"^(Downloading|Extracting|Waiting|Verifying|Pulling fs layer)")


class DockerWorker(BaseWorker):
    """Executes the runs of `docker` pools, each in a fresh container (see the module docstring).

    Job configuration used: `image`, `image_pull_policy`, `command`, `env`, `volumes`,
    `network_mode`, `mem_limit`, `cpus`, `labels`, `privileged`, `auto_remove`, `timeout`,
    `stream_output`. The engine is the one of the environment (`DOCKER_HOST`, else the local
    socket).
    """

    type = "docker"
    job_variables = job_templates.DOCKER_VARIABLES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notebooks: DeploymentNotebooks[dict[str, Any]] = DeploymentNotebooks()
        self._process = _this_process()
        #: (run id, attempt) of the containers this worker runs or is about to create.
        self._mine: set[tuple[str, str]] = set()
        self._mine_lock = threading.Lock()
        self._pool_ids: dict[str, str] = {}
        self._reaper_stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def setup(self) -> None:
        from nbflows.packaging.images import docker_client

        super().setup()
        # Fail at start, with how to fix it, rather than crash every run.
        docker_client().close()
        self._reaper_stop.clear()
        self._reaper = threading.Thread(
            target=self._reap_loop, name="nbflows-docker-reaper", daemon=True
        )
        self._reaper.start()

    def teardown(self) -> None:
        self._reaper_stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=STOP_TIMEOUT + 5)
        super().teardown()

    def run(
        self, claimed: ClaimedRun, reporter: RunReporter, cancel_event: threading.Event
    ) -> Outcome:
        import docker

        config = claimed.job_configuration
        deployment = claimed.deployment
        if deployment is None:
            return self.without_deployment()
        reference = config.get("image") or (deployment.get("image") or {}).get("reference")
        if not reference:
            return Outcome(
                "FAILED",
                f"no image to run: deployment {deployment.get('full_name')} was deployed without "
                "one and the job variable 'image' is not set. Deploy with an image "
                "(nbflows deploy ... --image NAME) or set the job variable 'image'.",
            )
        refused = self._host_access_refusal(config)
        if refused is not None:
            return Outcome("FAILED", refused)
        mine = (claimed.id, str(claimed.flow_run.get("attempt") or 1))
        with self._mine_lock:  # from here on, reaping leaves this attempt's container alone
            self._mine.add(mine)
        engine = docker.from_env()
        try:
            policy = str(config.get("image_pull_policy") or "IfNotPresent")
            problem = _ensure_image(engine, str(reference), policy, reporter)
            if problem is not None:
                return Outcome("CRASHED", problem)
            if cancel_event.is_set():
                return Outcome("CANCELLED", "cancelled before the container started")
            notebook = self._notebook(claimed, reporter)
            options = self._container_options(claimed, reference)
            self._stop_earlier_attempts(engine, claimed, options["labels"], reporter)
            try:
                container = engine.containers.create(**options)
            except docker.errors.APIError as exc:
                return Outcome(
                    "CRASHED", f"the container could not be created: {exc.explanation or exc}"
                )
            try:
                return self._run_container(claimed, container, notebook, reporter, cancel_event)
            finally:
                self._dispose(container, config, reporter)
        finally:
            engine.close()
            with self._mine_lock:
                self._mine.discard(mine)

    def _host_access_refusal(self, config: Mapping[str, Any]) -> str | None:
        """Why the container must not be created (host access the pool does not allow), or
        None. The server checks too; this holds when its template changed since the deploy, or
        when an allowed host path is a link elsewhere (seen only on the engine's machine)."""
        from nbflows.workers import job_templates

        local = os.environ.get("DOCKER_HOST", "unix://").startswith("unix://")
        problems = job_templates.host_access_problems(
            config, resolve=os.path.realpath if local else None
        )
        if not problems:
            return None
        return f"worker '{self.name}' refused to create the container: " + "; ".join(problems)

    # -- one container ------------------------------------------------------------------------

    def _container_options(self, claimed: ClaimedRun, reference: str) -> dict[str, Any]:
        config = claimed.job_configuration
        deployment = claimed.deployment or {}
        kind = deployment.get("kind")
        environment = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
        environment.update(
            {
                protocol.FLOW_RUN_ID_ENV: claimed.id,
                protocol.FLOW_NAME_ENV: str(claimed.flow_run.get("flow_name") or ""),
                protocol.RUN_KIND_ENV: "cell" if kind == "cell" else "notebook",
                "NBFLOWS_OUTPUT_NOTEBOOK": f"{RUN_DIR}/{_OUTPUT}",
                OUTPUT_DIR_ENV: OUTPUT_DIR,
                "PYTHONUNBUFFERED": "1",
            }
        )
        attempt = str(claimed.flow_run.get("attempt") or 1)
        environment["NBFLOWS_FLOW_RUN_ATTEMPT"] = attempt
        labels = {str(k): str(v) for k, v in (config.get("labels") or {}).items()}
        labels.update(
            {
                LABEL_FLOW_RUN: claimed.id,
                LABEL_ATTEMPT: attempt,
                LABEL_DEPLOYMENT: str(deployment.get("full_name") or ""),
                LABEL_WORK_POOL: claimed.pool,
                LABEL_WORK_POOL_ID: self._pool_id(claimed),
                LABEL_WORKER: self.name,
                LABEL_WORKER_PROCESS: self._process,
            }
        )
        if config.get("auto_remove") is False:
            labels[LABEL_KEEP] = "true"
        options: dict[str, Any] = {
            "image": reference,
            "name": f"nbflows-{claimed.id}-{attempt}",
            "environment": environment,
            "labels": labels,
            "detach": True,
            "privileged": bool(config.get("privileged")),
        }
        if config.get("command"):
            options["command"] = [str(x) for x in config["command"]]
        else:
            options["entrypoint"] = ["python", "-m", "nbflows.workers.docker"]
            options["command"] = [f"{RUN_DIR}/{_SPEC}"]
        if config.get("mem_limit"):
            # Swap included: otherwise Docker allows as much swap again and a notebook over
            # its limit crawls instead of ending.
            options["mem_limit"] = options["memswap_limit"] = str(config["mem_limit"])
        if config.get("cpus"):
            options["nano_cpus"] = int(float(config["cpus"]) * 1e9)
        if config.get("volumes"):
            options["volumes"] = [str(v) for v in config["volumes"]]
        if config.get("network_mode"):
            options["network_mode"] = str(config["network_mode"])
        return options

    def _run_container(
        self,
        claimed: ClaimedRun,
        container: Container,
        notebook: Mapping[str, Any] | None,
        reporter: RunReporter,
        cancel_event: threading.Event,
    ) -> Outcome:
        import docker

        config = claimed.job_configuration
        timeout = float(config["timeout"]) if config.get("timeout") else None
        spec = {
            "notebook": f"{RUN_DIR}/{_NOTEBOOK}" if notebook is not None else None,
            "parameters": claimed.flow_run.get("parameters") or {},
            "timeout": timeout,
        }
        files = {_SPEC: json.dumps(spec).encode()}
        if notebook is not None:
            files[_NOTEBOOK] = json.dumps(notebook).encode()
        container.put_archive("/", _run_dir_archive(files))
        deployment = claimed.deployment or {}
        limits = ", ".join(
            f"{key} {config[key]}"
            for key in ("mem_limit", "cpus", "network_mode")
            if config.get(key)
        )
        reporter.log(
            f"worker '{self.name}' runs {deployment.get('full_name')} (version "
            f"{claimed.deployment_version}, attempt "
            f"{claimed.flow_run.get('attempt', 1)}) in container {container.name} from image "
            f"{container.attrs['Config']['Image']}" + (f" ({limits})" if limits else "")
        )
        if cancel_event.is_set():
            return Outcome("CANCELLED", "cancelled before the container started")
        relay = _Relay(reporter)
        try:
            container.start()
        except docker.errors.APIError as exc:
            return Outcome("CRASHED", f"the container could not start: {exc.explanation or exc}")
        followers = [
            threading.Thread(
                target=_follow,
                args=(container, stream, relay),
                name=f"nbflows-docker-{stream}-{claimed.id}",
                daemon=True,
            )
            for stream in ("stdout", "stderr")
        ]
        for follower in followers:
            follower.start()
        stopped = self._watch(container, followers, cancel_event, timeout)
        exit_code = int(container.wait().get("StatusCode", -1))
        for follower in followers:
            follower.join(timeout=30)
        container.reload()
        oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
        copied = _copy_out(container)
        output_dir = _copy_output_dir(container, reporter)
        executed = copied.get(_OUTPUT)
        result = copied.get(_RESULT) or {}
        state, message = _end_state(
            stopped=stopped,
            exit_code=exit_code,
            oom_killed=oom_killed,
            result=result,
            relay=relay,
            mem_limit=config.get("mem_limit"),
            timeout=timeout,
            custom_command=bool(config.get("command")),
        )
        return Outcome(state, message, executed, output_dir=output_dir)

    def _watch(
        self,
        container: Container,
        followers: list[threading.Thread],
        cancel_event: threading.Event,
        timeout: float | None,
    ) -> str | None:
        """Wait for the container to end; stop it on cancellation ("cancelled") or when it
        outlives its timeout ("timeout"). Returns why it was stopped, None when it ended."""
        deadline = time.monotonic() + timeout + TIMEOUT_MARGIN if timeout else None
        next_look = time.monotonic()
        while True:
            if cancel_event.is_set():
                container.stop(timeout=STOP_TIMEOUT)
                return "cancelled"
            if deadline is not None and time.monotonic() >= deadline:
                container.stop(timeout=STOP_TIMEOUT)
                return "timeout"
            # The output streams end when the container does; a look at its state covers an
            # engine that closed them early.
            if not any(f.is_alive() for f in followers) or time.monotonic() >= next_look:
                container.reload()
                if container.status not in ("created", "running", "restarting", "paused"):
                    return None
                next_look = time.monotonic() + 2.0
            cancel_event.wait(POLL_INTERVAL)

    def _dispose(
        self, container: Container, config: Mapping[str, Any], reporter: RunReporter
    ) -> None:
        import docker

        if config.get("auto_remove") is False:
            try:
                if container.status in ("running", "created"):
                    container.kill()
            except docker.errors.APIError:
                pass
            reporter.log(f"container {container.name} is kept (auto_remove is false)")
            return
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # clean-up must not hide how the run ended (engine gone...)
            reporter.log(f"could not remove container {container.name}: {exc}", logging.WARNING)

    # -- containers no live attempt owns --------------------------------------------------------

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

    # -- the run's notebook -------------------------------------------------------------------

    def _notebook(self, claimed: ClaimedRun, reporter: RunReporter) -> dict[str, Any] | None:
        """The deployment's notebook as frozen in the run's version; None (the image's copy
        runs) when the API cannot give it."""
        try:
            return self._notebooks.get(claimed, self.client.read_deployment_notebook)
        except NBFlowsError as exc:
            reporter.log(
                f"could not read version {claimed.deployment_version} of the deployment's "
                f"notebook ({exc}); running the notebook baked into the image",
                logging.WARNING,
            )
            return None


# --------------------------------------------------------------------------------------------
# Worker-side helpers


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


def _this_process() -> str:
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


def _ensure_image(
    engine: docker.DockerClient, reference: str, policy: str, reporter: RunReporter
) -> str | None:
    """Make sure the engine has `reference` as `policy` says; None, or why the run cannot start."""
    import docker

    try:
        engine.images.get(reference)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    if policy == "Never":
        if present:
            return None
        return (
            f"image {reference} not found locally (image_pull_policy Never): build it on this "
            "worker's Docker engine (nbflows deploy --image builds where you deploy), or set the "
            "job variable image_pull_policy to IfNotPresent or Always to pull it from a registry"
        )
    if policy == "IfNotPresent" and present:
        return None
    from nbflows.packaging.images import split_image_reference

    repository, tag = split_image_reference(reference)
    reporter.log(f"pulling image {reference} (image_pull_policy {policy})")
    try:
        for chunk in engine.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                raise docker.errors.APIError(str(detail.get("message") or chunk.get("error")))
            status = str(chunk.get("status") or "")
            if status and not _PULL_NOISE.match(status):
                reporter.log(f"{chunk['id']}: {status}" if chunk.get("id") else status)
    except docker.errors.APIError as exc:
        where = "" if present else "; it is not on this worker's Docker engine either"
        return (
            f"pulling image {reference} failed (image_pull_policy {policy}): "
            f"{exc.explanation or exc}{where}"
        )
    return None


def _run_dir_archive(files: Mapping[str, bytes]) -> bytes:
    """A tar of `RUN_DIR` with `files`, writable by any user the image runs as."""
    buffer = io.BytesIO()
    now = time.time()
    folder = RUN_DIR.strip("/")
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in (folder, f"{folder}/{PurePosixPath(OUTPUT_DIR).name}"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o777, now
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o666, now
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _copy_out(container: Container) -> dict[str, Any]:
    """The executed notebook and the runner's result, as far as the container has them."""
    import docker

    try:
        chunks, _ = container.get_archive(RUN_DIR)
        data = b"".join(chunks)
    except docker.errors.NotFound:
        return {}
    found: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        for member in archive.getmembers():
            name = PurePosixPath(member.name).name
            if name not in (_OUTPUT, _RESULT) or not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            try:
                found[name] = json.loads(handle.read())
            except ValueError:
                continue  # cut short (the container was killed while writing it)
    return found


def _copy_output_dir(container: Container, reporter: RunReporter) -> str:
    """The container's output folder copied to a new folder here (empty when it has none).
    Only regular files are taken, by names inside the folder: a run cannot place links or
    write outside it on the worker's machine."""
    import tempfile

    import docker

    target = tempfile.mkdtemp(prefix="nbflows-output-")
    top = PurePosixPath(OUTPUT_DIR).name
    with tempfile.TemporaryFile() as spool:
        try:
            chunks, _ = container.get_archive(OUTPUT_DIR)
            for chunk in chunks:
                spool.write(chunk)
        except docker.errors.NotFound:
            return target
        except docker.errors.APIError as exc:
            reporter.log(f"could not copy the run's output folder: {exc}", logging.WARNING)
            return target
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r") as archive:
            for member in archive.getmembers():
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 2 or parts[0] != top or ".." in parts:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                path = os.path.join(target, *parts[1:])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with handle, open(path, "wb") as out:
                    while block := handle.read(1024 * 1024):
                        out.write(block)
    return target


@dataclass(frozen=True)
class _Line:
    """One output line of the container (an `OutputLineLike` for `RunReporter.output`)."""

    time: datetime
    stream: str
    text: str
    cell_index: int | None = None


class _Relay:
    """Turns the container's output into log lines and run events, as it comes."""

    def __init__(self, reporter: RunReporter) -> None:
        self._reporter = reporter
        self._lock = threading.Lock()
        #: Whether the runner spoke (records seen): without it, the output is a custom command's.
        self.records = 0
        #: The last plain lines, to explain an exit that left no result.
        self.tail: list[str] = []

    def line(self, stream: str, text: str) -> None:
        with self._lock:  # the two streams' threads: one line at a time, in order of arrival
            if stream == "stdout" and text.startswith(RECORD_PREFIX):
                try:
                    record = json.loads(text[len(RECORD_PREFIX) :])
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.records += 1
                    self._record(record)
                    return
            self.tail.append(text)
            del self.tail[:-_TAIL_LINES]
            self._reporter.output(_Line(datetime.now(timezone.utc), stream, text))

    def _record(self, record: Mapping[str, Any]) -> None:
        cell = record.get("cell")
        cell_index = cell if isinstance(cell, int) else None
        if record.get("k") == "line":
            try:
                moment = datetime.fromisoformat(str(record.get("time")))
            except ValueError:
                moment = datetime.now(timezone.utc)
            stream, text = str(record.get("stream") or "stdout"), str(record.get("text") or "")
            self._reporter.output(_Line(moment, stream, text, cell_index))
        elif record.get("k") == "event":
            self._reporter.event(record.get("data"), cell_index)


def _follow(container: Container, stream: str, relay: _Relay) -> None:
    """Relay one of the container's output streams, line by line, until the container ends."""
    pending = b""
    try:
        for chunk in container.logs(
            stdout=stream == "stdout", stderr=stream == "stderr", stream=True, follow=True
        ):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                relay.line(stream, raw.decode("utf-8", "replace").rstrip("\r"))
    except Exception as exc:  # the engine went away: the run's end is decided by its state
        relay.line("stderr", f"[nbflows] following the container's {stream} stopped: {exc}")
    if pending:
        relay.line(stream, pending.decode("utf-8", "replace").rstrip("\r"))


def _end_state(
    *,
    stopped: str | None,
    exit_code: int,
    oom_killed: bool,
    result: Mapping[str, Any],
    relay: _Relay,
    mem_limit: str | None,
    timeout: float | None,
    custom_command: bool,
) -> tuple[EndState, str]:
    """How a container run ended: cancelled by the worker, else killed for memory, else stopped
    by the worker at its timeout, else as the runner's result says, else by the exit code."""
    message = str(result.get("message") or "")
    if stopped == "cancelled":
        return "CANCELLED", message or "cancelled: the container was stopped"
    if oom_killed or result.get("oom"):
        limit = f"killed: out of memory (mem_limit {mem_limit or 'none'})"
        return "CRASHED", f"{limit}: {message}" if message else limit
    if stopped == "timeout":
        return "FAILED", (
            f"Timed out: the run exceeded its timeout of {timeout:g} s; the container was stopped"
        )
    status = result.get("status")
    if isinstance(status, str) and status in _STATES:
        return _STATES[status], "" if status == "completed" else message
    if exit_code == 0:
        return "COMPLETED", ""
    said = " | ".join(line for line in relay.tail[-5:] if line.strip())
    if not custom_command and relay.records == 0 and "No module named" in said:
        return "FAILED", (
            f"the container exited with code {exit_code} before running the notebook: {said}. "
            "The image needs nbflows, papermill and ipykernel: build it with dockerfile='auto', "
            "or install them in your Dockerfile"
        )
    if exit_code > 128:
        return "CRASHED", (
            f"the container was killed ({_signal_name(exit_code - 128)}, exit code {exit_code})"
        )
    return "FAILED", f"the container exited with code {exit_code}" + (f": {said}" if said else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------------------------
# Inside the container


class _Emitter:
    """Writes the runner's records to stdout, one line each, from any thread."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, record: Mapping[str, Any]) -> None:
        text = RECORD_PREFIX + json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._out.write(text)
            self._out.flush()


def run_in_container(
    spec_path: str, emit: Callable[[Mapping[str, Any]], None] | None = None
) -> int:
    """Execute the run described by `spec_path` (the worker put it there) and return the exit
    code (`EXIT_CODES`).

    Output lines and run events go to `emit` (default: stdout records for the worker); the
    executed notebook goes to `RUN_DIR/output.ipynb` and the outcome to `RUN_DIR/result.json`
    (`status`, `message` naming the failing or stopped cell, `oom`: a process was killed for
    memory). SIGTERM cancels: the kernel is interrupted and stopped, the notebook saved.
    """
    import nbformat

    from nbflows.execution.engine import execute

    send = emit or _Emitter(sys.stdout)
    folder = os.path.dirname(spec_path)
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: cancel.set())
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    notebook_path = spec.get("notebook") or os.environ.get("NBFLOWS_FLOW_NOTEBOOK")
    if not notebook_path or not os.path.isfile(notebook_path):
        return _write_result(
            folder,
            "failed",
            f"no notebook to run: {notebook_path or 'none given'} (neither the worker nor the "
            "image's NBFLOWS_FLOW_NOTEBOOK names an existing file)",
        )
    notebook = nbformat.read(notebook_path, as_version=4)

    def line(out: Any) -> None:
        send(
            {
                "k": "line",
                "time": out.time.isoformat(),
                "stream": out.stream,
                "text": out.text,
                "cell": out.cell_index,
            }
        )

    def event(data: Any, cell_index: int) -> None:
        send({"k": "event", "data": data, "cell": cell_index})

    result = execute(
        notebook,
        parameters=spec.get("parameters") or {},
        kernel_name=None,
        cwd=os.getcwd(),
        env={},
        timeout=spec.get("timeout"),
        on_output=line,
        on_event=event,
        kernel_pool=None,
        cancel_event=cancel,
    )
    _save_notebook(folder, result.notebook)
    oom = result.status == "crashed" and _out_of_memory()
    return _write_result(folder, result.status, result.message, oom=oom)


def _save_notebook(folder: str, notebook: Any) -> None:
    import nbformat

    temporary = os.path.join(folder, f".{_OUTPUT}.tmp")
    nbformat.write(notebook, temporary)
    os.replace(temporary, os.path.join(folder, _OUTPUT))


def _write_result(folder: str, status: str, message: str, **details: Any) -> int:
    with open(os.path.join(folder, _RESULT), "w", encoding="utf-8") as fh:
        json.dump({"status": status, "message": message, **details}, fh)
    return EXIT_CODES[status]


def _out_of_memory() -> bool:
    """Whether the memory cgroup of this container has killed a process (cgroup v2, then v1)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path, encoding="ascii") as fh:
                counts = dict(line.split(None, 1) for line in fh if line.strip())
        except (OSError, ValueError):
            continue
        return int(counts.get("oom_kill", "0").strip() or 0) > 0
    return False


def _main(argv: Iterable[str]) -> int:
    args = list(argv)
    if len(args) != 1:
        print("usage: python -m nbflows.workers.docker RUN_DIR/spec.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_in_container(args[0])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
