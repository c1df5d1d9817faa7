"""Dask pools: each run executes as a task on an existing Dask cluster.

A run's path through a `dask` pool:

1. The worker (embedded or `nbflows worker start --pool P`) claims the run as for any pool and
   connects to the pool's scheduler (`scheduler_address`, or a dask-gateway cluster; `clusters`).
2. It submits `task.run_attempt` with everything by value: the deployment's frozen notebook,
   the run's parameters and environment, and its project files zipped (`project`). The key is
   `nbflows-<run id>-<attempt>-<fence>`; the task holds the job's Dask `resources`.
3. On a Dask worker the task asks the nbflows worker for its attempt (`attempt`: an attempt is
   granted to one execution only, so a task Dask reschedules after a worker died does not run
   again), then executes the notebook with papermill in a local kernel, in a folder of its own.
4. Output lines and `%%flow` child-run events travel back as Dask events while it runs and reach
   the run's log and child runs through the worker's `RunReporter`, as from a container.
5. The executed notebook is the task's result; the worker stores it and reports the end state.

Cancel sets the attempt's Dask `Event` (the task interrupts and kills its kernel), then cancels
the future. The Dask workers need nbflows and the notebook's kernel installed, nothing else.
"""

from nbflows.workers.dask.worker import DaskWorker

__all__ = ["DaskWorker"]
