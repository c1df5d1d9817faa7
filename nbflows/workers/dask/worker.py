"""`DaskWorker`: the worker of `dask` pools; each claimed run becomes one Dask task.

The life cycle (claims, heartbeats, fences, reports, cancel) is `BaseWorker`'s; `run()`:

1. connects to the pool's scheduler (`Clusters`: one Dask client per address, kept open); when
   it cannot be reached within `connect_timeout` the run FAILS saying so, and the worker's pools
   show it until a run gets through again;
2. submits `task.run_attempt` with the frozen notebook, the run's spec and the project zip,
   under the key `nbflows-<run id>-<attempt>-<fence>`, `pure=False`, `retries=0`, holding the
   job's Dask `resources` (and `memory` as the resource MEMORY);
3. follows the attempt (`AttemptFollower`): grants the first execution (the fence), relays log
   lines and `%%flow` events to the `RunReporter`, cancels, and watches the Dask worker it runs
   on; the executed notebook comes back as the task's result.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from nbflows.workers.base import BaseWorker
from nbflows.workers.claimed_run import ClaimedRun, DeploymentNotebooks, Outcome
from nbflows.workers.dask.attempt import AttemptFollower
from nbflows.workers.dask.clusters import Clusters, SchedulerUnreachable
from nbflows.workers.dask.project import Project, ProjectFiles
from nbflows.workers.dask.variables import DASK_VARIABLES, MEMORY_RESOURCE
from nbflows.workers.process import run_environment

if TYPE_CHECKING:
    from nbflows.workers.reporting import RunReporter

__all__ = ["DaskWorker", "task_key"]

#: How long a started task waits for the worker to grant it its attempt.
GRANT_TIMEOUT = 60.0


def task_key(claimed: ClaimedRun) -> str:
    """The Dask key of a claimed attempt: run id, attempt and claim fence (a run handed back and
    claimed again is a new task, never the old one's result)."""
    attempt = claimed.flow_run.get("attempt", 1)
    return f"nbflows-{claimed.id}-{attempt}-{claimed.fence}"


class DaskWorker(BaseWorker):
    """Executes the runs of `dask` pools as tasks on a Dask cluster (see the module docstring)."""

    type = "dask"
    job_variables = DASK_VARIABLES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clusters = Clusters(self.say)
        self._notebooks: DeploymentNotebooks[dict[str, Any]] = DeploymentNotebooks()
        self._projects = ProjectFiles()
        #: Pools whose last run could not reach its scheduler, with why (until one can).
        self._problems: dict[str, str] = {}

    def setup(self) -> None:
        import distributed  # noqa: F401  (missing package: the pools say so)

    def teardown(self) -> None:
        self._clusters.close()

    def run(
        self, claimed: ClaimedRun, reporter: RunReporter, cancel_event: threading.Event
    ) -> Outcome:
        config = claimed.job_configuration
        deployment = claimed.deployment
        if deployment is None:
            return self.without_deployment()
        try:
            resources = _resources(config)
            cluster = self._clusters.connect(config)
        except ValueError as exc:
            return Outcome("FAILED", str(exc))
        except SchedulerUnreachable as exc:
            self._problems[claimed.pool] = str(exc)
            self.say(f"{claimed.label}: {exc}")
            return Outcome("FAILED", str(exc))
        self._problems.pop(claimed.pool, None)
        notebook = self._notebook(claimed)
        project = (
            self._projects.get(deployment, claimed.deployment_version)
            if config.get("project_files", True)
            else Project(None)
        )
        if project.note:
            reporter.log(project.note, 30)
        key = task_key(claimed)
        spec = {
            "key": key,
            "topic": cluster.topic,
            "grant": f"{key}-grant",
            "cancel": f"{key}-cancel",
            "grant_timeout": GRANT_TIMEOUT,
            "notebook_dir": project.notebook_dir,
            "parameters": claimed.flow_run.get("parameters") or {},
            "kernel_name": config.get("kernel_name") or None,
            "env": {str(k): str(v) for k, v in (config.get("env") or {}).items()},
            "timeout": config.get("timeout") or None,
            "run_env": run_environment(claimed),
        }
        shown = f" holding {resources}" if resources else ""
        reporter.log(
            f"worker '{self.name}' submits {deployment.get('full_name')} (version "
            f"{claimed.deployment_version}, attempt {claimed.flow_run.get('attempt', 1)}) to the "
            f"Dask scheduler {cluster.address} as task {key}{shown}"
        )
        follower = AttemptFollower(cluster, spec, reporter, cancel_event)
        return follower.run(notebook, project.archive, resources)

    def pool_problem(self, pool: str) -> str | None:
        return self._problems.get(pool)

    def _notebook(self, claimed: ClaimedRun) -> dict[str, Any]:
        def load(deployment_id: str, version: int | None) -> dict[str, Any]:
            # Normalised through nbformat's JSON reader (joins the file format's line lists).
            import nbformat

            text = json.dumps(self.client.read_deployment_notebook(deployment_id, version))
            return dict(nbformat.reads(text, as_version=4))

        return self._notebooks.get(claimed, load)


def _resources(config: dict[str, Any]) -> dict[str, float]:
    """The Dask resources a run holds: `resources`, and `memory` as MEMORY bytes."""
    resources = {str(k): float(v) for k, v in (config.get("resources") or {}).items()}
    memory = config.get("memory")
    if memory:
        from dask.utils import parse_bytes

        try:
            resources[MEMORY_RESOURCE] = float(parse_bytes(str(memory)))
        except ValueError as exc:
            raise ValueError(
                f"the job variable memory={memory!r} is not a size such as '2GiB': {exc}"
            ) from None
    return resources
