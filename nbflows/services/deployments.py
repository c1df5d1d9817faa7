"""Deployments: a flow, its frozen notebook, a pool/queue, parameters, job variables, schedules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nbflows.errors import Conflict, InvalidInput, NotFound
from nbflows.notebooks.remote import (
    REMOTE_SCHEMES,
    local_path_of,
    notebook_name,
    notebook_url_scheme,
    read_remote_notebook,
)
from nbflows.protocol import StateType
from nbflows.services import secrets
from nbflows.services.limits import Limits, too_large
from nbflows.services.schemas.bodies import DeploymentUpdate, DeployRequest
from nbflows.services.schemas.values import MAX_FLOW_NAME
from nbflows.services.work_pools import get_work_pool, get_work_queue
from nbflows.store import tables as t
from nbflows.workers import job_templates, redaction

if TYPE_CHECKING:
    from nbformat import NotebookNode


def deploy(
    s: Session, req: DeployRequest, root_dir: str | None, limits: Limits | None = None
) -> tuple[t.Deployment, bool]:
    """Create or update `flow/name`, freezing the notebook as a new version (see `redeploy`)."""
    deployment, created, _ = redeploy(s, req, root_dir, limits)
    return deployment, created


def redeploy(
    s: Session, req: DeployRequest, root_dir: str | None, limits: Limits | None = None
) -> tuple[t.Deployment, bool, list[dict[str, str]]]:
    """Create or update `flow/name`, freezing the notebook as a new version; returns the
    deployment, whether it was created, and what changed (`{"field", "old", "new"}` in words).

    Deploying again keeps what the request does not give (schedules, parameters, job
    variables, queue, paused, tags, description, retries, catch-up, image); the version label
    belongs to the version and is not kept. A deployment stays on its work pool unless the
    request says `move_pool`. Everything is checked before anything is written, so a refused
    deploy changes nothing.
    """
    limits = limits or Limits()
    from nbflows.notebooks.extraction import extract_flow_notebook, whole_notebook_snapshot
    from nbflows.notebooks.loading import notebook_to_json, with_kernel
    from nbflows.notebooks.parameters import parameter_schema, validate_parameters
    from nbflows.scheduling.schedules import parse_schedule, schedule_to_dict

    given = {key for key, value in req.model_dump(exclude_unset=True).items() if value is not None}
    pool = get_work_pool(s, req.work_pool_name)
    if req.notebook is not None:
        path = _resolve_inside(req.path, root_dir)
        source = _inline_notebook(req.notebook, limits)
        if req.kernel_name:
            source = with_kernel(source, req.kernel_name)
    else:
        path, source = _load_notebook(req.path, root_dir, req.kernel_name, limits)
    url = req.path if notebook_url_scheme(req.path) in REMOTE_SCHEMES else None
    if req.flow_name:
        frozen = extract_flow_notebook(source, req.flow_name)
        kind, flow_name = "cell", req.flow_name
    else:
        frozen = whole_notebook_snapshot(source)
        kind, flow_name = "notebook", notebook_name(url) if url else path.stem
    if len(flow_name) > MAX_FLOW_NAME:
        raise InvalidInput(
            f"flow name '{flow_name[:40]}…' is {len(flow_name)} characters; at most "
            f"{MAX_FLOW_NAME} (a whole notebook's flow is named after its file)"
        )
    deployment = s.scalar(
        select(t.Deployment).where(
            t.Deployment.flow_name == flow_name, t.Deployment.name == req.name
        )
    )
    old: t.Deployment | None = deployment
    if old is not None and old.pool.name != pool.name and not req.move_pool:
        raise Conflict(
            f"deployment '{flow_name}/{req.name}' runs on work pool '{old.pool.name}'; deploying "
            f"it to '{pool.name}' would move it there, with its schedules. Deploy it under "
            "another name, or move it on purpose: --move-pool (move_pool=True in Python)",
            work_pool_name=old.pool.name,
        )

    def kept(key: str, default: Any) -> Any:
        if key in given or old is None:
            return getattr(req, key) if key in given else default
        return getattr(old, key)

    same_pool = old is not None and old.pool.name == pool.name
    queue_name = req.work_queue_name or (old.queue.name if same_pool and old else None)
    queue = get_work_queue(s, pool.name, queue_name)
    schema = parameter_schema(frozen)
    parameters = kept("parameters", {})
    job_variables = kept("job_variables", {})
    since = f" (kept from version {old.version}; give them again to change them)" if old else ""
    try:
        validate_parameters(schema, parameters)
    except InvalidInput as exc:
        raise InvalidInput(exc.message + ("" if "parameters" in given else since)) from None
    try:
        job_templates.check_job_variables(pool.base_job_template, job_variables)
    except InvalidInput as exc:
        raise InvalidInput(exc.message + ("" if "job_variables" in given else since)) from None
    secrets.check_references(s, parameters, job_variables)
    image = deployment_image(req.image) if "image" in given or old is None else old.image
    schedules = [schedule_to_dict(parse_schedule(d)) for d in req.schedules]

    rel = url or (os.path.relpath(path, root_dir) if root_dir else str(path))
    entrypoint = f"{rel}:{req.flow_name}" if req.flow_name else rel
    before = describe(s, old) if old is not None else {}
    old_version = old.version if old is not None else 0
    created = deployment is None
    if deployment is None:
        deployment = t.Deployment(flow_name=flow_name, name=req.name, version=0)
        s.add(deployment)
    deployment.kind = kind
    deployment.entrypoint = entrypoint
    deployment.path = url or str(path)
    # A notebook from a bucket has no folder: its runs start in the server's root directory.
    deployment.working_dir = str(path.parent)
    deployment.pool = pool
    deployment.queue = queue
    deployment.parameters = parameters
    deployment.parameter_schema = schema
    deployment.job_variables = job_variables
    deployment.paused = kept("paused", False)
    deployment.version = (deployment.version or 0) + 1
    deployment.version_label = req.version
    deployment.tags = kept("tags", [])
    deployment.description = kept("description", None)
    deployment.retries = kept("retries", 0)
    deployment.retry_delay = kept("retry_delay", 0.0)
    deployment.catchup = kept("catchup", "latest")
    deployment.image = image
    deployment.retention_days = kept("retention_days", None)
    deployment.retention_keep_last = kept("retention_keep_last", None)
    deployment.exports = kept("exports", None)
    s.flush()
    s.add(
        t.DeploymentVersion(
            deployment_id=deployment.id,
            version=deployment.version,
            notebook=notebook_to_json(frozen),
        )
    )
    if "schedules" in given or created:
        _replace_schedules(s, deployment, schedules)
    if old is not None:
        _reschedule(s, deployment)
    s.flush()
    changes = [] if old is None else _changes(before, describe(s, deployment), old_version)
    return deployment, created, changes


def describe(s: Session, d: t.Deployment) -> dict[str, str]:
    """What a person compares between two versions of a deployment, in words."""
    from nbflows.scheduling.schedules import parse_schedule

    def listed(values: Any) -> str:
        return ", ".join(map(str, values)) if values else "none"

    def mapping(values: dict[str, Any]) -> str:
        return json.dumps(values, sort_keys=True, default=str) if values else "none"

    version = s.get(t.DeploymentVersion, (d.id, d.version))
    return {
        "work pool": d.pool.name,
        "queue": d.queue.name,
        "schedules": listed(
            [
                parse_schedule(x.schedule).describe() + ("" if x.active else " (inactive)")
                for x in d.schedules
            ]
        ),
        "parameters": mapping(d.parameters),
        "job variables": mapping(redaction.redact(d.job_variables, d.pool.base_job_template)),
        "paused": "yes" if d.paused else "no",
        "tags": listed(d.tags),
        "description": d.description or "none",
        "retries": f"{d.retries} (retry delay {d.retry_delay:g} s)",
        "catch-up": d.catchup,
        "image": (d.image or {}).get("reference") or "none",
        "code": version.notebook if version is not None else "",
    }


def _changes(
    before: dict[str, str], after: dict[str, str], old_version: int
) -> list[dict[str, str]]:
    changes = []
    for field, new in after.items():
        old = before.get(field, "")
        if old == new:
            continue
        if field == "code":  # the frozen notebooks differ: say so, not their JSON
            changes.append({"field": "code", "old": f"version {old_version}", "new": "changed"})
        else:
            changes.append({"field": field, "old": old, "new": new})
    return changes


#: What a deployment's `image` may say (what `nbflows.packaging.build.build_for_deploy` returns).
_IMAGE_TEXT_KEYS = (
    "name",
    "tag",
    "reference",
    "context_hash",
    "base_image",
    "dockerfile",
    "platform",
    "image_id",
)
_IMAGE_FLAG_KEYS = ("built", "pushed")


def deployment_image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `image` of a deploy request, checked, with its `reference` (`name:tag`) filled in.

    The server stores the image the client built (`nbflows.packaging.build.build_for_deploy`); it
    builds nothing itself, so an image must name its tag (or its reference).
    """
    from nbflows.packaging.images import DeploymentImage

    if image is None:
        return None
    valid = ", ".join((*_IMAGE_TEXT_KEYS, *_IMAGE_FLAG_KEYS, "buildargs"))
    asks_build = sorted(key for key in ("build", "push") if key in image)
    if asks_build:
        raise InvalidInput(
            f"image {', '.join(map(repr, asks_build))}: the server builds and pushes no images; "
            "the client does, before deploying (nbflows deploy --image NAME, or "
            "Flow.deploy(image=...)), and sends the built reference",
            valid=valid,
        )
    unknown = sorted(set(image) - {*_IMAGE_TEXT_KEYS, *_IMAGE_FLAG_KEYS, "buildargs"})
    if unknown:
        raise InvalidInput(f"unknown image key(s) {', '.join(map(repr, unknown))}; valid: {valid}")
    for key in _IMAGE_TEXT_KEYS:
        if image.get(key) is not None and not isinstance(image[key], str):
            raise InvalidInput(f"image {key!r} must be a string, got {image[key]!r}")
    for key in _IMAGE_FLAG_KEYS:
        if image.get(key) is not None and not isinstance(image[key], bool):
            raise InvalidInput(f"image {key!r} must be true or false, got {image[key]!r}")
    buildargs = image.get("buildargs")
    if buildargs is not None and not (
        isinstance(buildargs, dict) and all(isinstance(v, str) for v in buildargs.values())
    ):
        raise InvalidInput("image 'buildargs' must map names to string values")
    if not image.get("name") and not image.get("reference"):
        raise InvalidInput(f"an image needs a 'name' (or a 'reference'); valid keys: {valid}")
    if image.get("reference"):
        parsed = DeploymentImage(name=image["reference"])
        if parsed.tag is None:
            raise InvalidInput(
                f"image reference {image['reference']!r} has no tag; give it as NAME:TAG"
            )
        given = (image.get("name"), image.get("tag"))
        if given[0] not in (None, parsed.name) or given[1] not in (None, parsed.tag):
            raise InvalidInput(
                f"image reference {image['reference']!r} does not match name "
                f"{image.get('name')!r} and tag {image.get('tag')!r}"
            )
    else:
        parsed = DeploymentImage(name=image["name"], tag=image.get("tag"))
        if parsed.tag is None:
            raise InvalidInput(
                f"image {parsed.name!r} has no tag: its tag comes from the build, which the "
                "client makes before deploying (nbflows deploy --image NAME); give NAME:TAG "
                "for an image built already"
            )
    return {**image, "name": parsed.name, "tag": parsed.tag, "reference": parsed.reference}


def _inline_notebook(data: dict[str, Any], limits: Limits) -> Any:
    """The `notebook` of a deploy request, checked as a notebook file read from disk would be."""
    import json

    from nbflows.notebooks.loading import notebook_from_json

    text = json.dumps(data)
    if len(text) > limits.max_notebook_size:
        raise too_large("'notebook'", len(text), limits, "max_notebook_size")
    try:
        return notebook_from_json(text)
    except InvalidInput as err:
        raise InvalidInput(f"'notebook' is {err.message}") from None


def _load_notebook(
    path: str, root_dir: str | None, kernel: str | None, limits: Limits
) -> tuple[Path, NotebookNode]:
    """(its path, the notebook) of a notebook deployed by path or URL (`notebooks.remote`):
    a URL's path is the server's root directory (where its runs start)."""
    from nbflows.notebooks.loading import (
        kernel_name,
        load_notebook,
        notebook_from_json,
        with_kernel,
    )

    scheme = notebook_url_scheme(path)
    if scheme == "file":
        path = local_path_of(path)
    elif scheme is not None:
        text = read_remote_notebook(path)
        if len(text) > limits.max_notebook_size:
            raise too_large(f"notebook {path}", len(text), limits, "max_notebook_size")
        try:
            nb = notebook_from_json(text)
        except InvalidInput as err:
            raise InvalidInput(f"{path}: {err.message}", path=path) from None
        if kernel:
            nb = with_kernel(nb, kernel)
        if not kernel_name(nb):
            raise InvalidInput(
                f"{path} has no kernel (metadata.kernelspec.name is missing): name the kernel "
                "to run it in (nbflows deploy --kernel python3)",
                path=path,
            )
        return Path(root_dir or os.getcwd()).resolve() / notebook_name(path), nb
    _check_notebook_file_size(path, root_dir, limits)
    return load_notebook(path, root_dir, kernel)


def _check_notebook_file_size(path: str, root_dir: str | None, limits: Limits) -> None:
    """Refuse a notebook file over `max_notebook_size` before reading it (one inside the root:
    `load_notebook` refuses the others without telling anything about them)."""
    root = Path(root_dir or os.getcwd()).resolve()
    resolved = (root / Path(path).expanduser()).resolve()
    if resolved.is_relative_to(root) and resolved.is_file():
        size = resolved.stat().st_size
        if size > limits.max_notebook_size:
            raise too_large(f"notebook {path}", size, limits, "max_notebook_size")


def _resolve_inside(path: str, root_dir: str | None) -> Path:
    root = Path(root_dir or os.getcwd()).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise InvalidInput(f"'{path}' is outside the server's root directory {root}")
    return resolved


def _replace_schedules(s: Session, d: t.Deployment, schedules: list[dict[str, Any]]) -> None:
    """Keep rows whose timing is unchanged (their future runs stay); drop the others' runs."""
    from nbflows.scheduling.schedules import parse_schedule

    wanted = {parse_schedule(x).key(): x for x in schedules}
    for row in list(d.schedules):
        key = parse_schedule(row.schedule).key()
        if key in wanted:
            row.schedule = wanted.pop(key)
            row.active = bool(row.schedule.get("active", True))
        else:
            _drop_scheduled_runs(s, d.id, schedule_id=row.id)
            d.schedules.remove(row)
    for data in wanted.values():
        d.schedules.append(
            t.DeploymentSchedule(schedule=data, active=bool(data.get("active", True)))
        )


def _reschedule(s: Session, d: t.Deployment) -> None:
    """Future scheduled runs hold the pool, queue, parameters and retries of the version that
    made them: drop them and have the scheduler make them again (same times, same keys) for
    this one. Runs already due (Late) stay as they are."""
    s.execute(
        delete(t.FlowRun).where(
            t.FlowRun.deployment_id == d.id,
            t.FlowRun.state_type == StateType.SCHEDULED.value,
            t.FlowRun.attempt == 1,
            t.FlowRun.idempotency_key.like("schedule:%"),
            t.FlowRun.expected_start_time > t.utcnow(),
        )
    )
    for row in d.schedules:
        row.scheduled_until = None


def _drop_scheduled_runs(s: Session, deployment_id: str, schedule_id: str | None = None) -> None:
    query = delete(t.FlowRun).where(
        t.FlowRun.deployment_id == deployment_id,
        t.FlowRun.state_type == StateType.SCHEDULED.value,
        t.FlowRun.attempt == 1,
    )
    if schedule_id is not None:
        query = query.where(t.FlowRun.idempotency_key.like(f"schedule:{schedule_id}:%"))
    else:
        query = query.where(t.FlowRun.idempotency_key.like("schedule:%"))
    s.execute(query)


def get_deployment(s: Session, ref: str) -> t.Deployment:
    """By id, or by `flow_name/name`."""
    if "/" in ref:
        flow_name, _, name = ref.partition("/")
        found = s.scalar(
            select(t.Deployment).where(
                t.Deployment.flow_name == flow_name, t.Deployment.name == name
            )
        )
    else:
        found = s.get(t.Deployment, ref)
    if found is None:
        names = s.scalars(
            select(t.Deployment.flow_name + "/" + t.Deployment.name).order_by(
                t.Deployment.flow_name
            )
        ).all()
        known = ", ".join(names[:20]) if names else "none yet (deploy one with `nbflows deploy`)"
        raise NotFound(f"no deployment '{ref}'; deployments: {known}")
    return found


def list_deployments(
    s: Session, flow_name: str | None = None, work_pool_name: str | None = None
) -> list[t.Deployment]:
    query = select(t.Deployment).order_by(t.Deployment.flow_name, t.Deployment.name)
    if flow_name:
        query = query.where(t.Deployment.flow_name == flow_name)
    if work_pool_name:
        query = query.join(t.WorkPool).where(t.WorkPool.name == work_pool_name)
    return list(s.scalars(query))


def update_deployment(s: Session, ref: str, req: DeploymentUpdate) -> t.Deployment:
    from nbflows.notebooks.parameters import validate_parameters
    from nbflows.scheduling.schedules import parse_schedule, schedule_to_dict

    d = get_deployment(s, ref)
    fields = req.model_dump(exclude_unset=True)
    secrets.check_references(s, fields.get("parameters"), fields.get("job_variables"))
    if fields.get("parameters") is not None:
        validate_parameters(d.parameter_schema, fields["parameters"])
        d.parameters = fields["parameters"]
    if fields.get("job_variables") is not None:
        job_templates.check_job_variables(d.pool.base_job_template, fields["job_variables"])
        d.job_variables = fields["job_variables"]
    if fields.get("work_queue_name") is not None:
        d.queue = get_work_queue(s, d.pool.name, fields["work_queue_name"])
    if fields.get("schedules") is not None:
        schedules = [schedule_to_dict(parse_schedule(x)) for x in fields["schedules"]]
        _replace_schedules(s, d, schedules)
    for key in ("paused", "tags", "description", "catchup", "exports"):
        if fields.get(key) is not None:
            setattr(d, key, fields[key])
    # Retention: 0 turns the deployment's own policy off (the server's applies again).
    if fields.get("retention_days") is not None:
        d.retention_days = fields["retention_days"] or None
    if fields.get("retention_keep_last") is not None:
        d.retention_keep_last = fields["retention_keep_last"] or None
    s.flush()
    return d


def delete_deployment(s: Session, ref: str) -> None:
    d = get_deployment(s, ref)
    s.execute(
        delete(t.FlowRun).where(
            t.FlowRun.deployment_id == d.id, t.FlowRun.state_type == StateType.SCHEDULED.value
        )
    )
    s.delete(d)


def upcoming_runs(s: Session, deployment_id: str, limit: int = 10) -> list[t.FlowRun]:
    """The deployment's SCHEDULED runs, soonest first."""
    return list(
        s.scalars(
            select(t.FlowRun)
            .where(
                t.FlowRun.deployment_id == deployment_id,
                t.FlowRun.state_type == StateType.SCHEDULED.value,
            )
            .order_by(t.FlowRun.expected_start_time)
            .limit(max(1, min(limit, 1000)))
        )
    )


def deployment_notebook(s: Session, ref: str, version: int | None = None) -> str:
    d = get_deployment(s, ref)
    row = s.get(t.DeploymentVersion, (d.id, version or d.version))
    if row is None:
        raise NotFound(f"deployment '{d.flow_name}/{d.name}' has no version {version}")
    return row.notebook
