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
4. **The container starts** and runs `python -m nbflows.workers.container_runner RUN_DIR/spec.json`
   (`nbflows.workers.container_runner.run_in_container`): the notebook executes with papermill (the nbflows engine of
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
the pool allows (host paths, privileged, host network: `nbflows.workers.host_access.check_host_access`,
which the server applies at deploy and run time; here symbolic links are judged where they lead
too), and stops any container an earlier attempt of the run left running: a retry never runs
beside the attempt it replaces (on one engine), and the run's log says so.

**Containers of lost workers** are stopped and removed by the worker: see
`nbflows.workers.container_ownership`.

Docker calls block: they run in the worker's run thread (one engine connection per run), never
on an event loop. `docker` is imported lazily, and the container side imports neither it nor
the worker's client.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbflows import protocol
from nbflows.errors import NBFlowsError
from nbflows.results.artifacts import OUTPUT_DIR_ENV
from nbflows.workers.claimed_run import ClaimedRun, DeploymentNotebooks, Outcome
from nbflows.workers.container_files import copy_out, copy_output_dir, ensure_image, run_dir_archive
from nbflows.workers.container_output import Relay, end_state, follow
from nbflows.workers.container_ownership import (
    LABEL_ATTEMPT,
    LABEL_DEPLOYMENT,
    LABEL_FLOW_RUN,
    LABEL_KEEP,
    LABEL_WORK_POOL,
    LABEL_WORK_POOL_ID,
    LABEL_WORKER,
    LABEL_WORKER_PROCESS,
    STOP_TIMEOUT,
    ContainerReaping,
)
from nbflows.workers.container_runner import (
    NOTEBOOK_FILE,
    OUTPUT_DIR,
    OUTPUT_NOTEBOOK_FILE,
    RESULT_FILE,
    RUN_DIR,
    SPEC_FILE,
)
from nbflows.workers.job_variables import DOCKER_VARIABLES
from nbflows.workers.reporting import RunReporter

if TYPE_CHECKING:
    from docker.models.containers import Container

__all__ = ["DockerWorker"]

#: The worker stops a container this many seconds after the job's `timeout` if the runner inside
#: has not stopped by itself (kernel start-up is not part of the timeout).
TIMEOUT_MARGIN = 30.0
#: How often a running container is checked for cancellation, timeout and exit.
POLL_INTERVAL = 0.2


class DockerWorker(ContainerReaping):
    """Executes the runs of `docker` pools, each in a fresh container (see the module docstring).

    Job configuration used: `image`, `image_pull_policy`, `command`, `env`, `volumes`,
    `network_mode`, `mem_limit`, `cpus`, `labels`, `privileged`, `auto_remove`, `timeout`,
    `stream_output`. The engine is the one of the environment (`DOCKER_HOST`, else the local
    socket).
    """

    type = "docker"
    job_variables = DOCKER_VARIABLES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notebooks: DeploymentNotebooks[dict[str, Any]] = DeploymentNotebooks()

    def setup(self) -> None:
        from nbflows.packaging.docker_build import docker_client

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
            problem = ensure_image(engine, str(reference), policy, reporter)
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
        from nbflows.workers import host_access

        local = os.environ.get("DOCKER_HOST", "unix://").startswith("unix://")
        problems = host_access.host_access_problems(
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
                "NBFLOWS_OUTPUT_NOTEBOOK": f"{RUN_DIR}/{OUTPUT_NOTEBOOK_FILE}",
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
            options["entrypoint"] = ["python", "-m", "nbflows.workers.container_runner"]
            options["command"] = [f"{RUN_DIR}/{SPEC_FILE}"]
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
            "notebook": f"{RUN_DIR}/{NOTEBOOK_FILE}" if notebook is not None else None,
            "parameters": claimed.flow_run.get("parameters") or {},
            "timeout": timeout,
        }
        files = {SPEC_FILE: json.dumps(spec).encode()}
        if notebook is not None:
            files[NOTEBOOK_FILE] = json.dumps(notebook).encode()
        container.put_archive("/", run_dir_archive(files))
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
        relay = Relay(reporter)
        try:
            container.start()
        except docker.errors.APIError as exc:
            return Outcome("CRASHED", f"the container could not start: {exc.explanation or exc}")
        followers = [
            threading.Thread(
                target=follow,
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
        copied = copy_out(container)
        output_dir = copy_output_dir(container, reporter)
        executed = copied.get(OUTPUT_NOTEBOOK_FILE)
        result = copied.get(RESULT_FILE) or {}
        state, message = end_state(
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
