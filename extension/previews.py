"""Previews for the deploy dialog: what a deploy would do, computed by the code that does it.

`previews/schedules` shows the next times of schedules as they are typed (the scheduler's own
`nbflows.schedules`, and the server's minimum gap between runs); `previews/deploy` lists a
notebook's flows and parameters and the cells a deployment of it would hold (the extraction a
deploy runs), and checks parameters as a deploy would. Nothing is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tornado import web

from nbflows.errors import InvalidInput
from nbflows.services.limits import Limits
from nbflows.services.schemas.bodies import DeployPreviewRequest, SchedulePreviewRequest, parse

from .base import NBFlowsHandler
from .permissions import permitted

#: How far ahead the next times of a schedule are looked for.
HORIZON = timedelta(days=3660)


def schedule_times(req: SchedulePreviewRequest, floor: float) -> dict[str, Any]:
    """Each schedule's description and next `req.count` times; InvalidInput like a deploy's."""
    from nbflows.scheduling.scheduler import check_frequency
    from nbflows.scheduling.schedules import parse_schedule

    after = req.after or datetime.now(timezone.utc)
    if after.tzinfo is None:
        after = after.replace(tzinfo=timezone.utc)
    try:
        until = after + HORIZON
    except OverflowError:  # near the year 9999: as far as datetimes go
        until = datetime.max.replace(tzinfo=timezone.utc)
    items = []
    for index, spec in enumerate(req.schedules):
        try:
            schedule = parse_schedule(spec)
            check_frequency([spec], floor)
        except InvalidInput as exc:
            prefix = f"schedule {index + 1}: " if len(req.schedules) > 1 else ""
            raise InvalidInput(prefix + exc.message, index=index) from None
        times = schedule.next_times(after, until, limit=req.count)
        items.append(
            {"description": schedule.describe(), "next_times": [x.isoformat() for x in times]}
        )
    return {"schedules": items}


def deploy_preview(
    req: DeployPreviewRequest, root_dir: str | None, limits: Limits
) -> dict[str, Any]:
    """The notebook's flows and parameters, and the cells a deployment of it would hold."""
    from nbflows.notebooks.extraction import (
        extract_flow_notebook,
        find_flows,
        whole_notebook_snapshot,
    )
    from nbflows.notebooks.loading import kernel_name, load_notebook
    from nbflows.notebooks.parameters import parameter_schema, validate_parameters
    from nbflows.services.deployments import _check_notebook_file_size

    # The same checks as a deploy's, in the same order: a notebook too big is not read.
    _check_notebook_file_size(req.path, root_dir, limits)
    path, source = load_notebook(req.path, root_dir)
    if req.flow_name:
        frozen = extract_flow_notebook(source, req.flow_name)
        indices = frozen.metadata["nbflows"]["source_cells"]
        kind, flow_name = "cell", req.flow_name
    else:
        frozen = whole_notebook_snapshot(source)
        indices = list(range(len(frozen.cells)))
        kind, flow_name = "notebook", path.stem
    schema = parameter_schema(frozen)
    validate_parameters(schema, req.parameters)
    return {
        "path": req.path,
        "kind": kind,
        "flow_name": flow_name,
        "kernel_name": kernel_name(source),
        "flows": [{"name": n, "cell_index": i} for n, i in find_flows(source).items()],
        "parameter_schema": schema,
        "cells": [
            {
                "index": index,
                "cell_type": cell.cell_type,
                "source": cell.source,
                "tags": list(cell.get("metadata", {}).get("tags", [])),
            }
            for index, cell in zip(indices, frozen.cells, strict=True)
        ],
    }


class SchedulePreview(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self) -> None:
        from nbflows.scheduling.scheduler import MIN_INTERVAL

        req = parse(SchedulePreviewRequest, await self.body())
        floor = self.settings.get("nbflows_min_schedule_interval", MIN_INTERVAL)
        self.reply(await self.orch.compute(schedule_times, req, floor))


class DeployPreview(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(DeployPreviewRequest, await self.body())
        self.reply(await self.orch.compute(deploy_preview, req, self.orch.root_dir, self.limits))
