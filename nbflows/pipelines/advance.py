"""Scheduling the steps of pipeline runs: each step's child runs are made once its upstream
steps have ended, by the scheduler pass (which a step's end wakes), not by a process of its own.

One call of `advance_pipeline_runs` looks at every pipeline run that is due or running: it
starts those that are due, creates the child runs of every step whose upstream steps all ended
(or marks it skipped when its run-if is not met, or failed when its parameters cannot be made),
and ends the pipeline run once every step has ended. Calling it again changes nothing more: a
step's runs are recorded in `pipeline_step_runs` in the same transaction that creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session

from nbflows.errors import NBFlowsError
from nbflows.protocol import StateType
from nbflows.store import tables as t

from .deploy import pipeline_version
from .spec import (
    PipelineSpec,
    StepSpec,
    output_refs,
    reference,
    step_dependencies,
    topological_order,
)

__all__ = ["StepStates", "advance_pipeline_run", "advance_pipeline_runs"]

_FAILED = frozenset({"FAILED", "CRASHED"})
_ENDED = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED", "SKIPPED"})


class StepStates:
    """The step runs of one pipeline run, with the state of each (the child run's, or SKIPPED
    / FAILED for a step run no child was made for, WAITING for one not made yet)."""

    def __init__(self, s: Session, pipeline_run_id: str) -> None:
        self.rows = {
            (r.step, r.item): r
            for r in s.scalars(
                select(t.PipelineStepRun).where(
                    t.PipelineStepRun.pipeline_run_id == pipeline_run_id
                )
            )
        }
        ids = [r.flow_run_id for r in self.rows.values() if r.flow_run_id]
        self.children = (
            {c.id: c for c in s.scalars(select(t.FlowRun).where(t.FlowRun.id.in_(ids)))}
            if ids
            else {}
        )

    def state(self, step: str, item: int) -> str:
        row = self.rows.get((step, item))
        if row is None:
            return "WAITING"
        if row.status == "skipped":
            return "SKIPPED"
        if row.status == "failed":
            return "FAILED"
        child = self.children.get(row.flow_run_id or "")
        return child.state_type if child is not None else "CRASHED"

    def outputs(self, step: str, item: int) -> dict[str, Any]:
        row = self.rows.get((step, item))
        child = self.children.get(row.flow_run_id or "") if row is not None else None
        return dict(child.outputs or {}) if child is not None else {}

    def step_states(self, step: StepSpec) -> list[str]:
        return [self.state(step.name, i) for i in range(step.items())]

    def ended(self, step: StepSpec) -> bool:
        return all(x in _ENDED for x in self.step_states(step))


def advance_pipeline_runs(s: Session, now: datetime | None = None) -> tuple[set[str], set[str]]:
    """Advance every due or running pipeline run; returns the ids of pools given new runs, and
    the ids of the pipeline runs whose state changed (started or ended)."""
    now = now or t.utcnow()
    runs = s.scalars(
        select(t.FlowRun).where(
            # A literal, not a parameter: the partial index of pipeline runs then serves it.
            t.FlowRun.kind == literal_column("'pipeline'"),
            t.FlowRun.state_type.in_([StateType.SCHEDULED.value, StateType.RUNNING.value]),
        )
    ).all()
    pools: set[str] = set()
    changed: set[str] = set()
    for run in runs:
        if run.state_type == StateType.SCHEDULED.value and (run.expected_start_time or now) > now:
            continue
        before = run.state_type
        pools |= advance_pipeline_run(s, run)
        if run.state_type != before:
            changed.add(run.id)
    return pools, changed


def advance_pipeline_run(s: Session, run: t.FlowRun) -> set[str]:
    """Start the steps of `run` that can start; end `run` when all its steps ended."""
    from nbflows.services.flow_runs import transition

    if run.deployment_version is None and run.deployment_id:
        deployment = s.get(t.Deployment, run.deployment_id)
        run.deployment_version = deployment.version if deployment is not None else None
    try:
        spec, deployment_ids = pipeline_version(s, run)
    except NBFlowsError as exc:
        transition(run, StateType.FAILED, message=exc.message)
        return set()
    if run.state_type == StateType.SCHEDULED.value:
        transition(run, StateType.RUNNING)
    states = StepStates(s, run.id)
    pools: set[str] = set()
    for name in topological_order(spec):
        step = spec.step(name)
        missing = [i for i in range(step.items()) if (name, i) not in states.rows]
        upstream = [spec.step(u) for u in step_dependencies(step)]
        if not missing or not all(states.ended(u) for u in upstream):
            continue
        pools |= _start_step(s, run, spec, step, missing, upstream, deployment_ids, states)
    if all(states.ended(step) for step in spec.steps):
        _finish(run, spec, states)
    s.flush()
    return pools


def _start_step(
    s: Session,
    run: t.FlowRun,
    spec: PipelineSpec,
    step: StepSpec,
    items: list[int],
    upstream: list[StepSpec],
    deployment_ids: dict[str, str],
    states: StepStates,
) -> set[str]:
    from nbflows.services.flow_runs import create_deployment_run
    from nbflows.services.schemas.bodies import RunRequest

    def record(item: int, status: str, message: str | None, child: t.FlowRun | None = None) -> None:
        row = t.PipelineStepRun(
            pipeline_run_id=run.id,
            step=step.name,
            item=item,
            status=status,
            message=message,
            flow_run_id=child.id if child is not None else None,
            repair=run.attempt - 1,
        )
        s.add(row)
        states.rows[(step.name, item)] = row
        if child is not None:
            states.children[child.id] = child

    why_not = _run_if_unmet(step, upstream, states)
    if why_not is not None:
        for item in items:
            record(item, "skipped", why_not)
        return set()
    deployment = s.get(t.Deployment, deployment_ids.get(step.name, ""))
    try:
        if deployment is None:
            raise NBFlowsError(f"the deployment of step {step.name!r} was deleted; deploy again")
        parameters = _parameters(step, spec, run.parameters or {}, states)
    except NBFlowsError as exc:
        for item in items:
            record(item, "failed", exc.message)
        return set()
    pools: set[str] = set()
    for item in items:
        request = RunRequest(
            parameters={**parameters, **step.item_parameters(item)},
            tags=[f"pipeline:{spec.name}", f"step:{step.name}"],
        )
        key = f"pipeline:{run.id}:{run.attempt}:{step.name}:{item}"
        try:
            child, _ = create_deployment_run(s, deployment, request, idempotency_key=key)
        except NBFlowsError as exc:
            record(item, "failed", f"its parameters were refused: {exc.message}")
            continue
        child.parent_run_id = run.id
        record(item, "run", None, child)
        pools.add(deployment.work_pool_id)
    return pools


def _run_if_unmet(step: StepSpec, upstream: list[StepSpec], states: StepStates) -> str | None:
    """Why `step` is skipped under its run-if, or None when it runs."""
    ended = {u.name: states.step_states(u) for u in upstream}
    if step.run_if == "always":
        return None
    if step.run_if == "any_failed":
        if any(x in _FAILED for xs in ended.values() for x in xs):
            return None
        return "skipped: run_if any_failed, and no upstream step failed"
    not_ok = [name for name, xs in ended.items() if any(x != "COMPLETED" for x in xs)]
    if not_ok:
        return f"skipped: run_if all_succeeded, and upstream {', '.join(not_ok)} did not succeed"
    return None


def _parameters(
    step: StepSpec, spec: PipelineSpec, run_parameters: dict[str, Any], states: StepStates
) -> dict[str, Any]:
    """The step's parameters with pipeline parameters and upstream outputs filled in."""
    values: dict[str, Any] = {}
    pipeline_params = {**spec.parameters, **run_parameters}
    for param, value in step.parameters.items():
        ref = reference(value)
        if ref is None:
            values[param] = value
        elif ref[0] == "param":
            values[param] = pipeline_params.get(ref[1])
    for param, upstream, output in output_refs(step):
        up = spec.step(upstream)
        found = []
        for item in range(up.items()):
            outputs = states.outputs(upstream, item)
            if output not in outputs:
                label = up.label(item)
                recorded = ", ".join(sorted(outputs)) or "no outputs"
                raise NBFlowsError(
                    f"parameter {param!r} takes output {output!r} of step {label}, which did not "
                    f"record it (it recorded {recorded}; state "
                    f"{states.state(upstream, item)})"
                )
            found.append(outputs[output])
        # A fanned-out step's outputs come in as a list, one value per run (fan-in).
        values[param] = found if up.map is not None else found[0]
    return values


def _finish(run: t.FlowRun, spec: PipelineSpec, states: StepStates) -> None:
    from nbflows.services.flow_runs import transition

    failed, cancelled = [], []
    for step in spec.steps:
        for item, state in enumerate(states.step_states(step)):
            label = step.label(item)
            if state in _FAILED:
                failed.append(label)
            elif state == "CANCELLED":
                cancelled.append(label)
    if failed:
        transition(
            run,
            StateType.FAILED,
            message=f"step(s) failed: {', '.join(failed)}; repair the run to re-run them "
            f"(nbflows flow-run repair {run.id})",
        )
    elif cancelled:
        transition(run, StateType.CANCELLED, message=f"step(s) cancelled: {', '.join(cancelled)}")
    else:
        transition(run, StateType.COMPLETED)
