"""A pipeline run as a graph: its steps, their edges, and the live state of every step run.

The one shape the API answers (`GET flow_runs/{id}/pipeline`), the dashboard draws and the
notebook widget draws (`nbflows.pipelines.picture.render_svg`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from nbflows.store import tables as t

from .advance import StepStates
from .deploy import pipeline_version
from .spec import step_dependencies

__all__ = ["pipeline_graph"]


def pipeline_graph(s: Session, run: t.FlowRun) -> dict[str, Any]:
    """`{"flow_run", "steps", "edges", "step_runs"}` for the pipeline run `run`."""
    from nbflows.services.flow_runs import run_json

    spec, _ = pipeline_version(s, run)
    states = StepStates(s, run.id)
    step_runs = []
    for step in spec.steps:
        for item in range(step.items()):
            row = states.rows.get((step.name, item))
            step_runs.append(
                {
                    "step": step.name,
                    "item": item,
                    "label": step.label(item),
                    "status": row.status if row is not None else "waiting",
                    "state": states.state(step.name, item),
                    "message": _message(row, states),
                    "flow_run_id": row.flow_run_id if row is not None else None,
                    "outputs": states.outputs(step.name, item),
                    "repair": row.repair if row is not None else run.attempt - 1,
                }
            )
    return {
        "flow_run": run_json(s, run),
        "steps": [step.model_dump(mode="json") for step in spec.steps],
        "edges": [[dep, step.name] for step in spec.steps for dep in step_dependencies(step)],
        "step_runs": step_runs,
    }


def _message(row: t.PipelineStepRun | None, states: StepStates) -> str | None:
    if row is None:
        return None
    if row.message:
        return row.message
    child = states.children.get(row.flow_run_id or "")
    return child.state_message if child is not None else None
