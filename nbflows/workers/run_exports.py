"""The exports a deployment asks for (`exports`: html, pdf), made by the worker right after each
run from the executed notebook it has in hand, and sent to the server like artifacts: the
server only keeps them (converting there would hold its threads, and delay heartbeats)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbflows.errors import Conflict, NBFlowsError

if TYPE_CHECKING:
    from nbflows.workers.claimed_run import ClaimedRun
    from nbflows.workers.reporting import RunReporter
    from nbflows.workers.run_execution import RunExecution


def send_exports(
    worker: RunExecution, claimed: ClaimedRun, reporter: RunReporter, notebook: Mapping[str, Any]
) -> None:
    """Convert the executed notebook to each format of the run's deployment and send it; a
    format this machine cannot make (PDF without a Chromium) is named in the run's log."""
    from nbflows.results.conversion import check_format, convert

    formats = (claimed.deployment or {}).get("exports") or []
    for fmt in formats:
        try:
            data = convert(notebook, check_format(str(fmt)))
        except Exception as exc:  # the notebook is kept either way; the log says why not this
            reporter.log(f"no {fmt} export: {exc}", logging.WARNING)
            continue

        def store(fmt: str = str(fmt), data: bytes = data) -> Any:
            return worker.client.write_flow_run_export(
                claimed.id, fmt, data, worker=worker.name, fence=claimed.fence
            )

        try:
            worker._patiently(store)
        except NBFlowsError as exc:
            reporter.log(f"the {fmt} export was not kept: {exc}", logging.WARNING)
            if isinstance(exc, Conflict):
                return  # the run is not this worker's any more
        else:
            reporter.log(f"kept the {fmt} export of the notebook ({len(data)} bytes)")
