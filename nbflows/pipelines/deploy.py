"""Deploying a pipeline: one deployment of kind "pipeline" plus a step deployment per step.

Each step is deployed the way a flow is (`nbflows.deployments.redeploy`): its notebook (or its
`%%flow` cell) is frozen, its parameters checked against the notebook's, its pool and queue
looked up. The step deployments are named `PIPELINE.DEPLOYMENT.STEP` and tagged
`pipeline:PIPELINE`. The pipeline's own deployment holds the pipeline parameters and the
schedules; its frozen definition (a `PipelineVersion`) names the step deployment of every step.
All of it happens in the caller's transaction, so a refused pipeline creates nothing.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nbflows.errors import Conflict, InvalidInput, NBFlowsError, NotFound
from nbflows.services.limits import Limits
from nbflows.services.schemas.bodies import DeployRequest, PipelineDeployRequest
from nbflows.store import tables as t

from .spec import PipelineSpec, parse_pipeline, pipeline_json, reference

__all__ = ["deploy_pipeline", "pipeline_version", "step_deployment_name"]

PIPELINE_TAG = "pipeline:{}"


def step_deployment_name(pipeline: str, deployment: str, step: str) -> str:
    return f"{pipeline}.{deployment}.{step}"


def deploy_pipeline(
    s: Session, req: PipelineDeployRequest, root_dir: str | None, limits: Limits | None = None
) -> tuple[t.Deployment, bool]:
    """Create or update the pipeline deployment `PIPELINE/NAME` and its step deployments."""
    from nbflows.scheduling.schedules import parse_schedule, schedule_to_dict
    from nbflows.services.deployments import _replace_schedules, _reschedule, redeploy
    from nbflows.services.work_pools import get_work_pool, list_work_pools

    data = dict(req.pipeline)
    data["parameters"] = {**(data.get("parameters") or {}), **req.parameters}
    spec = parse_pipeline(data)
    schedules = [schedule_to_dict(parse_schedule(x)) for x in req.schedules]
    old = s.scalar(
        select(t.Deployment).where(
            t.Deployment.flow_name == spec.name, t.Deployment.name == req.name
        )
    )
    if old is not None and old.kind != "pipeline":
        raise Conflict(
            f"'{spec.name}/{req.name}' is a deployment of a {old.kind} flow, not a pipeline; "
            "deploy the pipeline under another name"
        )
    pools = {}
    for step in spec.steps:
        try:
            pools[step.pool] = get_work_pool(s, step.pool)
        except NotFound:
            known = ", ".join(p.name for p in list_work_pools(s)) or "none yet"
            raise InvalidInput(
                f"step {step.name!r}: no work pool {step.pool!r} (work pools: {known}); create it "
                f"first: nbflows work-pool create {step.pool} --type process"
            ) from None
    tag = PIPELINE_TAG.format(spec.name)
    step_ids: dict[str, str] = {}
    for step in spec.steps:
        name = step_deployment_name(spec.name, req.name, step.name)
        if len(name) > 200:
            raise InvalidInput(
                f"step {step.name!r}: its deployment name {name[:40]!r}… is longer than 200 "
                "characters; use shorter pipeline, deployment or step names"
            )
        literal = {k: v for k, v in step.parameters.items() if reference(v) is None}
        request = DeployRequest(
            path=_step_path(step.notebook, req.base_dir),
            flow_name=step.flow,
            name=name,
            work_pool_name=step.pool,
            work_queue_name=step.queue,
            parameters=literal,
            retries=step.retries,
            retry_delay=step.retry_delay,
            tags=[tag],
            description=f"step {step.name!r} of pipeline {spec.name}/{req.name}",
            move_pool=True,
        )
        try:
            deployment, _, _ = redeploy(s, request, root_dir, limits)
        except NBFlowsError as exc:
            # A missing notebook is a mistake in the pipeline (422), not a missing resource.
            kind = InvalidInput if isinstance(exc, NotFound) else type(exc)
            raise kind(f"step {step.name!r}: {exc.message}", **exc.details) from None
        _check_parameter_names(step.name, deployment.parameter_schema, step.parameters, step.map)
        step_ids[step.name] = deployment.id
    first_pool = pools[spec.steps[0].pool]
    created = old is None
    d = old or t.Deployment(flow_name=spec.name, name=req.name, version=0)
    if created:
        s.add(d)
    d.kind = "pipeline"
    d.entrypoint = f"pipeline {spec.name} ({len(spec.steps)} steps)"
    d.path = req.base_dir or ""
    d.working_dir = req.base_dir or ""
    # A deployment row names a pool; the pipeline's own runs have none (its steps have theirs).
    d.pool = first_pool
    d.queue = next(q for q in first_pool.queues if q.name == "default")
    d.parameters = spec.parameters
    d.parameter_schema = {
        "type": "object",
        "properties": {k: {"default": v} for k, v in spec.parameters.items()},
        "additionalProperties": False,
    }
    d.job_variables = {}
    d.paused = req.paused
    d.version = (d.version or 0) + 1
    d.tags = sorted({*req.tags, tag})
    d.description = req.description
    d.retries = 0
    d.catchup = req.catchup
    d.image = None
    s.flush()
    s.add(
        t.PipelineVersion(
            deployment_id=d.id,
            version=d.version,
            spec={"pipeline": pipeline_json(spec), "deployments": step_ids},
        )
    )
    _replace_schedules(s, d, schedules)
    if not created:
        _reschedule(s, d)
    s.flush()
    return d, created


def _step_path(notebook: str, base_dir: str | None) -> str:
    expanded = os.path.expanduser(notebook)
    if base_dir and not os.path.isabs(expanded):
        return os.path.normpath(os.path.join(base_dir, expanded))
    return expanded


def _check_parameter_names(
    step: str, schema: dict[str, Any], parameters: dict[str, Any], mapped: dict[str, Any] | None
) -> None:
    if schema.get("additionalProperties") is True:
        return
    known = schema.get("properties") or {}
    unknown = [name for name in [*parameters, *(mapped or {})] if name not in known]
    if unknown:
        valid = ", ".join(known) or "none (the notebook has no cell tagged 'parameters')"
        raise InvalidInput(
            f"step {step!r}: its notebook has no parameter {', '.join(map(repr, unknown))} "
            f"(its parameters: {valid})"
        )


def pipeline_version(s: Session, run: t.FlowRun) -> tuple[PipelineSpec, dict[str, str]]:
    """The frozen pipeline a pipeline run executes, and its step deployment ids by step."""
    row = (
        s.get(t.PipelineVersion, (run.deployment_id, run.deployment_version))
        if run.deployment_id and run.deployment_version
        else None
    )
    if row is None:
        raise NotFound(f"the pipeline of run '{run.id}' is gone (its deployment was deleted)")
    return PipelineSpec.model_validate(row.spec["pipeline"]), dict(row.spec["deployments"])
