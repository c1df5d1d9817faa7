"""Process pools: runs execute with papermill in kernels on the worker's own machine.

Each run gets a fresh kernel from a `KernelPool` (a spare is pre-started per kernel spec,
working directory and environment, so a run does not wait for a kernel to boot) and executes the
deployment's frozen notebook, version by version as deployed, in the notebook's original folder
so that relative data paths work.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflows import protocol
from nbflows.results.artifacts import OUTPUT_DIR_ENV
from nbflows.results.project_files import materialise
from nbflows.workers.base import BaseWorker
from nbflows.workers.claimed_run import ClaimedRun, DeploymentNotebooks, EndState, Outcome
from nbflows.workers.job_variables import PROCESS_VARIABLES
from nbflows.workers.reporting import RunReporter

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from nbflows.execution.engine import ExecutionResult
    from nbflows.execution.kernel_pool import KernelPool

__all__ = ["ProcessWorker", "run_environment"]

_OUTCOMES: dict[str, EndState] = {
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "crashed": "CRASHED",
}


def run_environment(claimed: ClaimedRun, api_url: str | None = None) -> dict[str, str]:
    """What the kernel must know about its run (read by `%%flow`, see nbflows.client.context):
    its ids and, with `api_url`, the API and the run's own credential (never the worker's).

    A spare Python kernel starts before its run is known, so these are set inside it just before
    the notebook runs; a kernel of another language is started with them (see `execute`).
    """
    kind = (claimed.deployment or {}).get("kind")
    env = {
        protocol.FLOW_RUN_ID_ENV: claimed.id,
        protocol.FLOW_NAME_ENV: str(claimed.flow_run.get("flow_name") or ""),
        protocol.RUN_KIND_ENV: "cell" if kind == "cell" else "notebook",
    }
    if api_url and claimed.run_token:
        env |= {protocol.API_URL_ENV: api_url, protocol.API_TOKEN_ENV: claimed.run_token}
    return env


class ProcessWorker(BaseWorker):
    """Executes the runs of `process` pools with papermill in local kernels.

    Job configuration used: `working_dir` (default: the deployment's folder), `env` (added to
    the worker's environment), `kernel_name` (default: the notebook's kernel spec), `timeout`
    (seconds, then the run fails), `stream_output`.
    """

    type = "process"
    job_variables = PROCESS_VARIABLES

    def __init__(self, *args: Any, max_spare_kernels: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_spare_kernels = max_spare_kernels
        self._kernels: KernelPool | None = None
        self._notebooks: DeploymentNotebooks[NotebookNode] = DeploymentNotebooks()

    def setup(self) -> None:
        # papermill, nbclient and jupyter_client load here (about 2 s), not in the first run
        # and not when the CLI starts.
        import nbflows.execution.engine  # noqa: F401
        from nbflows.execution.kernel_pool import KernelPool

        self._kernels = KernelPool(max_spares=self.max_spare_kernels)

    def teardown(self) -> None:
        if self._kernels is not None:
            self._kernels.shutdown()
            self._kernels = None

    def run(
        self, claimed: ClaimedRun, reporter: RunReporter, cancel_event: threading.Event
    ) -> Outcome:
        from nbflows.execution.engine import execute

        config = claimed.job_configuration
        deployment = claimed.deployment
        if deployment is None:
            return self.without_deployment()
        if config.get("command"):
            return Outcome(
                "FAILED",
                "process pools run the deployment's notebook; a custom job command "
                f"({config['command']!r}) is not supported. Remove the 'command' job variable.",
            )
        notebook = self._notebook(claimed)
        cwd = self._working_dir(claimed, reporter)
        env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
        kernel_name = config.get("kernel_name") or None
        # The run's artifacts: a fresh folder per attempt, collected after the run.
        output_dir = tempfile.mkdtemp(prefix=f"nbflows-output-{claimed.id}-")
        reporter.log(
            f"worker '{self.name}' runs {deployment.get('full_name')} "
            f"(version {claimed.deployment_version}, "
            f"attempt {claimed.flow_run.get('attempt', 1)}) in {cwd}"
        )
        result = execute(
            notebook,
            parameters=claimed.flow_run.get("parameters") or {},
            kernel_name=kernel_name,
            cwd=cwd,
            env=env,
            timeout=config.get("timeout") or None,
            on_output=reporter.output,
            on_event=reporter.event,
            kernel_pool=self._kernels,
            cancel_event=cancel_event,
            run_env={**run_environment(claimed, self.client.api_url), OUTPUT_DIR_ENV: output_dir},
        )
        return _outcome(result, output_dir)

    def _notebook(self, claimed: ClaimedRun) -> NotebookNode:
        """The deployment's notebook as frozen in the version the run was claimed with."""
        import nbformat

        def load(deployment_id: str, version: int | None) -> NotebookNode:
            # Through the JSON reader: it joins the line lists of the file format into strings.
            text = json.dumps(self.client.read_deployment_notebook(deployment_id, version))
            return nbformat.reads(text, as_version=4)

        return self._notebooks.get(claimed, load)

    def _working_dir(self, claimed: ClaimedRun, reporter: RunReporter) -> str:
        configured = claimed.job_configuration.get("working_dir")
        if configured:
            return os.path.expanduser(str(configured))
        deployment = claimed.deployment or {}
        folder = deployment.get("working_dir")
        if folder and os.path.isdir(folder):
            return str(folder)
        # Deployed on another machine: the project files the version carries, in a folder per
        # deployment version (its kernels stay warm across runs).
        base = os.path.join(tempfile.gettempdir(), "nbflows-runs", str(deployment.get("id")))
        version = claimed.deployment_version
        manifest = self.client.read_deployment_files(str(deployment.get("id")), version)
        if manifest.get("files"):
            target = Path(base) / f"v{version}"
            cwd = materialise(
                manifest,
                target,
                lambda sha: self.client.read_deployment_file(str(deployment.get("id")), sha),
            )
            reporter.log(
                f"the deployment's folder {folder!r} is not on this machine; running in {cwd} "
                f"with the {len(manifest['files'])} project files of version {version}"
            )
            return str(cwd)
        os.makedirs(base, exist_ok=True)
        reporter.log(
            f"the deployment's folder {folder!r} does not exist on this machine; running in "
            f"{base} (set the job variable 'working_dir' to choose one)",
            logging.WARNING,
        )
        return base


def _outcome(result: ExecutionResult, output_dir: str) -> Outcome:
    notebook: Mapping[str, Any] = result.notebook
    state = _OUTCOMES[result.status]
    message = "" if state == "COMPLETED" else result.message
    return Outcome(state, message, notebook, output_dir=output_dir)
