"""Repairing a failed pipeline run: its failed steps and everything downstream run again, in
the same pipeline run (a new attempt of it), reusing the steps that succeeded and their outputs.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from nbflows.errors import Conflict
from nbflows.protocol import StateType
from nbflows.store import tables as t

from .advance import StepStates
from .deploy import pipeline_version
from .spec import PipelineSpec, step_dependencies

__all__ = ["downstream_of", "repair_pipeline_run"]


def downstream_of(spec: PipelineSpec, steps: set[str]) -> set[str]:
    """`steps` and every step that depends on one of them, directly or not."""
    found = set(steps)
    changed = True
    while changed:
        changed = False
        for step in spec.steps:
            if step.name not in found and any(d in found for d in step_dependencies(step)):
                found.add(step.name)
                changed = True
    return found


def repair_pipeline_run(s: Session, run_id: str) -> t.FlowRun:
    """Schedule the failed pipeline run `run_id` again from its failed steps (409 unless it is
    a FAILED or CRASHED pipeline run)."""
    from nbflows.services.flow_runs import get_flow_run, transition

    run = get_flow_run(s, run_id, lock=True)
    if run.kind != "pipeline":
        raise Conflict(
            f"run '{run_id}' is a {run.kind} run, not a pipeline run; only a pipeline run can "
            "be repaired (run its deployment again instead)"
        )
    if run.state_type not in (StateType.FAILED.value, StateType.CRASHED.value):
        raise Conflict(
            f"only a FAILED or CRASHED pipeline run can be repaired; run '{run_id}' is "
            f"{run.state_type}"
        )
    spec, _ = pipeline_version(s, run)
    states = StepStates(s, run.id)
    bad_items = {key for key in states.rows if states.state(*key) != "COMPLETED"}
    again = downstream_of(spec, {step for step, _ in bad_items})
    kept = sorted({step for step, _ in states.rows} - again)
    for key, row in states.rows.items():
        step = key[0]
        # A fanned-out step re-runs only its items that did not succeed, unless an upstream
        # step runs again (then its inputs may change: all of it runs again).
        upstream_again = any(d in again for d in step_dependencies(spec.step(step)))
        if key in bad_items or (step in again and upstream_again):
            s.delete(row)
    s.flush()
    transition(
        run,
        StateType.SCHEDULED,
        retry=True,
        message=(
            f"repair {run.attempt}: re-running {', '.join(sorted(again))}; reusing "
            f"{', '.join(kept) or 'nothing'}"
        ),
    )
    s.flush()
    return run
