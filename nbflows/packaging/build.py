"""Packaging a flow for a docker work pool: the build step of deploying with an image.

`nbflows deploy ... --image NAME` and `Flow.deploy(image=...)` both call `build_for_deploy`
where the notebook and the Docker engine are (the CLI process, or the kernel), *before* the
deploy request: a build that fails raises and no deployment is created or changed. It

1. checks the target: a docker work pool, job variables the pool's template allows (so that a
   refused deploy is said before a one-minute build, not after it);
2. extracts the flow notebook (`nbflows.notebooks.extraction`), or snapshots the whole notebook, exactly
   as the server freezes it;
3. picks the base image: `DeploymentImage.base_image`, else the pool's `base_image` (pinned in
   its job configuration, or the variable's default), else `NBFLOWS_BASE_IMAGE`, else
   `python:X.Y-slim`;
4. builds it (`nbflows.packaging.docker_build.build_image`: content-addressed tag, no build when the engine has
   the image already; the image gets the running nbflows, or the wheel `NBFLOWS_IMAGE_WHEEL`
   names), pushes it when asked;

and returns the `image` object of the deploy request, whose `reference` becomes the image the
deployment's runs use (unless the job variable `image` says otherwise).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflows.errors import InvalidInput
from nbflows.packaging.images import (
    CONTEXT_EXTRAS_DIR,
    DeploymentImage,
    default_base_image,
    split_image_reference,
)
from nbflows.packaging.nbflows_wheel import NbflowsPackage

if TYPE_CHECKING:
    import docker

__all__ = [
    "IMAGE_WHEEL_ENV",
    "build_for_deploy",
    "check_image_pool",
    "image_wheel",
    "pool_base_image",
]

#: The path of an nbflows wheel that the images install instead of the running nbflows (by
#: default the same release, or a wheel of the development tree built from its current source):
#: pins what goes into the images while the nbflows source is being edited, or to a vetted wheel.
IMAGE_WHEEL_ENV = "NBFLOWS_IMAGE_WHEEL"

Progress = Callable[[str], None]

_PLACEHOLDER_PREFIX = "{{"


def pool_base_image(pool: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(the pool's base image, whether the pool pins it) from its base job template.

    Pinned: the job configuration hard-codes `base_image`; otherwise the default of the
    `base_image` variable, if the template declares one with a default.
    """
    template = pool.get("base_job_template") or {}
    configured = (template.get("job_configuration") or {}).get("base_image")
    if isinstance(configured, str) and configured and _PLACEHOLDER_PREFIX not in configured:
        return configured, True
    variable = ((template.get("variables") or {}).get("properties") or {}).get("base_image")
    default = variable.get("default") if isinstance(variable, Mapping) else None
    return (default if isinstance(default, str) and default else None), False


def check_image_pool(pool: Mapping[str, Any], job_variables: Mapping[str, Any] | None) -> None:
    """Refuse, before any build, what the server would refuse after it: an image deployment to
    a pool that does not run images, and job variables outside the pool's template."""
    from nbflows.workers import job_templates

    name, kind = pool.get("name"), pool.get("type")
    if kind != "docker":
        raise InvalidInput(
            f"an image runs on a docker work pool, and work pool '{name}' is a {kind} pool: "
            "deploy without an image to run there, or deploy to a docker pool "
            "(nbflows work-pool create NAME --type docker)",
            work_pool_name=name,
            type=kind,
        )
    job_templates.check_job_variables(pool.get("base_job_template") or {}, job_variables)


def build_for_deploy(
    notebook_path: str | os.PathLike[str],
    flow_name: str | None,
    image: DeploymentImage,
    pool: Mapping[str, Any],
    build: bool = True,
    push: bool = False,
    progress: Progress | None = None,
    *,
    job_variables: Mapping[str, Any] | None = None,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Build (unless `build=False`) and push (if `push`) the image of a deployment.

    `pool` is the target work pool as the API returns it; `flow_name` None deploys the whole
    notebook. Build and push output goes to `progress` line by line. Returns the deploy
    request's `image`: `name`, `tag`, `reference`, `context_hash`, `built` (False when the
    engine had the image already), `pushed`, `base_image`, `dockerfile`, `image_id`.

    With `build=False` nothing is built: the reference is `image`'s own tag, or the content tag
    a build would give. Raises `InvalidInput` for a target that cannot take the image (see
    `check_image_pool`), a notebook that cannot be built (see
    `nbflows.packaging.build_context.prepare_build_context`), `ImageBuildError` naming the failing step, and
    `ImagePushError` with the registry's message.
    """
    from nbflows.notebooks.extraction import extract_flow_notebook, whole_notebook_snapshot
    from nbflows.notebooks.loading import load_notebook
    from nbflows.packaging.build_context import prepare_build_context
    from nbflows.packaging.build_plan import plan_build
    from nbflows.packaging.docker_build import build_image, push_image

    say = progress or (lambda _line: None)
    check_image_pool(pool, job_variables)
    chosen = _with_base_image(image, pool)
    context = prepare_build_context(notebook_path)
    _, source = load_notebook(context.notebook)
    frozen = (
        extract_flow_notebook(source, flow_name) if flow_name else whole_notebook_snapshot(source)
    )
    label = flow_name or context.notebook.stem

    spec: dict[str, Any] = {
        "name": chosen.name,
        "tag": chosen.tag,
        "dockerfile": chosen.dockerfile,
        "base_image": chosen.base_image,
        "built": False,
        "pushed": False,
    }
    if chosen.platform:
        spec["platform"] = chosen.platform
    if chosen.buildargs:
        spec["buildargs"] = dict(chosen.buildargs)
    package = image_wheel()
    if build:
        result = build_image(chosen, context, frozen, say, client, flow_name=label, package=package)
        spec.update(
            reference=result.reference,
            context_hash=result.context_hash,
            built=result.built,
            image_id=result.image_id,
        )
        if result.built:
            cached = sum(step.cached for step in result.steps)
            rebuilt = [step.instruction for step in result.steps if not step.cached]
            say(
                f"Built image {result.reference} in {result.seconds:.1f} s: {cached} of "
                f"{len(result.steps)} steps from the layer cache"
                + (f"; rebuilt: {' | '.join(rebuilt)}" if rebuilt else "")
            )
    elif chosen.tag is not None:
        spec["reference"] = chosen.reference
    else:
        plan = plan_build(chosen, context, frozen, flow_name=label, package=package)
        for warning in plan.warnings:
            say(warning)
        spec.update(reference=plan.reference, context_hash=plan.context_hash)
        say(f"Not building (build=False): the deployment uses the image {plan.reference}")
    spec["tag"] = split_image_reference(str(spec["reference"]))[1] or "latest"
    if push:
        push_image(str(spec["reference"]), say, client)
        spec["pushed"] = True
    return spec


def image_wheel() -> NbflowsPackage | None:
    """The wheel `NBFLOWS_IMAGE_WHEEL` names, None when it is not set."""
    configured = os.environ.get(IMAGE_WHEEL_ENV, "").strip()
    if not configured:
        return None
    wheel = Path(configured).expanduser()
    if wheel.suffix != ".whl" or not wheel.is_file():
        raise InvalidInput(
            f"{IMAGE_WHEEL_ENV}={configured} is not an nbflows wheel file; unset it to install "
            "the running nbflows in images"
        )
    return NbflowsPackage(requirement=f"{CONTEXT_EXTRAS_DIR}/{wheel.name}", wheel=wheel)


def _with_base_image(image: DeploymentImage, pool: Mapping[str, Any]) -> DeploymentImage:
    if image.dockerfile != "auto":
        if image.base_image:
            raise InvalidInput(
                f"base image {image.base_image} applies to the Dockerfile nbflows writes "
                f"(dockerfile='auto'); the Dockerfile {image.dockerfile} names its own base "
                "image in its FROM line: leave the base image out, or change that line"
            )
        return image
    pooled, pinned = pool_base_image(pool)
    if pinned and image.base_image not in (None, pooled):
        raise InvalidInput(
            f"work pool '{pool.get('name')}' pins the base image {pooled}: its base job "
            f"template hard-codes it, so base image {image.base_image} cannot be used; leave "
            "the base image out, or deploy to another pool",
            base_image=image.base_image,
            pinned=pooled,
        )
    return dataclasses.replace(image, base_image=image.base_image or pooled or default_base_image())
