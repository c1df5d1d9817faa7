"""Building and pushing a deployment image with the Docker engine.

The story of a build, as `build_image` tells it:

1. `prepare_build_context(notebook)` (`nbflows.packaging.build_context`) finds the project
   folder sent to Docker and refuses a context that would leave out the notebook or files it
   opens by relative path.
2. `plan_build(image, context, flow_notebook)` (`nbflows.packaging.build_plan`) writes the
   Dockerfile, lists the context files as Docker would and hashes all of it into a content tag.
3. `build_image(...)` does nothing when an image with that tag and hash exists; otherwise it
   streams the context to the engine and the build output to `progress`, naming the failing step
   on error (`ImageBuildError`).
4. `push_image(reference)` pushes with the user's own Docker credentials.

Everything here blocks on the Docker engine: callers in an event loop run it in a thread.
`docker` is imported lazily.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbflows.errors import InvalidInput
from nbflows.packaging.build_context import BuildContext
from nbflows.packaging.build_plan import (
    DOCKERFILE_IN_CONTEXT,
    BuildPlan,
    plan_build,
    write_context_tar,
)
from nbflows.packaging.images import (
    LABEL_CONTEXT_HASH,
    OUTPUT_LINES_KEPT,
    DeploymentImage,
    ImageBuildError,
    ImagePushError,
    Progress,
    split_image_reference,
)
from nbflows.packaging.nbflows_wheel import NbflowsPackage

if TYPE_CHECKING:
    import docker
    from nbformat import NotebookNode

__all__ = ["BuildResult", "BuildStep", "build_image", "docker_client", "push_image"]
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


# --------------------------------------------------------------------------------------------
# Building and pushing


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile step of a build, and whether Docker took it from its layer cache."""

    number: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    """`built` is False when an image of the same content existed and nothing was built."""

    reference: str
    built: bool
    seconds: float
    steps: list[BuildStep] = field(default_factory=list)
    image_id: str | None = None
    context_hash: str = ""


def docker_client() -> docker.DockerClient:
    """A client for the engine of the environment (`DOCKER_HOST`, else the local socket).

    Raises `InvalidInput` saying how to get one when no engine answers.
    """
    import docker  # heavy (requests, urllib3): only where Docker is used

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the local socket"
        raise InvalidInput(
            f"no Docker engine reachable at {where} ({exc}); start the Docker engine, or set "
            "DOCKER_HOST to a reachable one",
        ) from exc
    return client


def build_image(
    image: DeploymentImage,
    context: BuildContext,
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
    progress: Progress | None = None,
    client: docker.DockerClient | None = None,
    *,
    flow_name: str | None = None,
    package: NbflowsPackage | None = None,
) -> BuildResult:
    """Build the deployment image of `flow_notebook` from `context` (see `plan_build`).

    Nothing is built when the engine already has an image with the planned reference and the
    same content hash (`built=False`). Build output lines go to `progress` as they come.
    Raises `ImageBuildError` naming the failing step and its last output lines; for a base
    image that is neither on the engine nor pullable, the error says how to choose another.
    """
    import docker

    started = time.monotonic()
    say = progress or (lambda _line: None)
    plan = plan_build(image, context, flow_notebook, flow_name=flow_name, package=package)
    for warning in plan.warnings:
        say(warning)
    client = client or docker_client()

    existing = _local_image(client, plan.reference)
    if existing is not None and existing.labels.get(LABEL_CONTEXT_HASH) == plan.context_hash:
        say(f"Image {plan.reference} is up to date: nothing to build")
        return BuildResult(
            reference=plan.reference,
            built=False,
            seconds=time.monotonic() - started,
            image_id=existing.id,
            context_hash=plan.context_hash,
        )

    say(f"Building image {plan.reference} from {plan.context.root}")
    output = _BuildOutput(say)
    with tempfile.TemporaryFile() as fileobj:
        write_context_tar(plan, fileobj)
        fileobj.seek(0)
        options: dict[str, Any] = {
            "fileobj": fileobj,
            "custom_context": True,
            "dockerfile": DOCKERFILE_IN_CONTEXT,
            "tag": plan.reference,
            "labels": dict(plan.labels),
            "rm": True,
            "forcerm": True,
            "decode": True,
        }
        if plan.buildargs:
            options["buildargs"] = dict(plan.buildargs)
        if plan.platform:
            options["platform"] = plan.platform
        try:
            for chunk in client.api.build(**options):
                output.feed(chunk)
        except docker.errors.APIError as exc:
            # Refused before any step ran: a Dockerfile that does not parse, a bad platform...
            raise ImageBuildError(
                f"Docker refused to build {plan.reference}: {exc.explanation or exc}",
                step=output.step,
                output=output.lines,
            ) from exc
    output.finish()
    if output.error is not None:
        raise _build_error(plan, output)
    return BuildResult(
        reference=plan.reference,
        built=True,
        seconds=time.monotonic() - started,
        steps=output.steps,
        image_id=output.image_id,
        context_hash=plan.context_hash,
    )


def push_image(
    reference: str,
    progress: Progress | None = None,
    client: docker.DockerClient | None = None,
) -> None:
    """Push `reference` with the user's Docker credentials (`~/.docker/config.json` and its
    credential helpers). Raises `ImagePushError` with the registry's message on refusal."""
    import docker

    say = progress or (lambda _line: None)
    repository, tag = split_image_reference(reference)
    client = client or docker_client()
    say(f"Pushing {reference}")
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = detail.get("message") or chunk.get("error") or str(chunk)
                raise ImagePushError(f"pushing {reference} failed: {message}", reference=reference)
            status = chunk.get("status")
            if status:
                say(f"{chunk['id']}: {status}" if chunk.get("id") else status)
    except docker.errors.APIError as exc:
        raise ImagePushError(
            f"pushing {reference} failed: {exc.explanation or exc}", reference=reference
        ) from exc


def _local_image(client: docker.DockerClient, reference: str) -> Any:
    import docker

    try:
        return client.images.get(reference)
    except docker.errors.ImageNotFound:
        return None


class _BuildOutput:
    """Follows the classic builder's JSON stream: lines to `progress`, steps and their cache
    hits, the image id, and the error with the output of the step that failed."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._partial = ""
        self._cached = False
        self.steps: list[BuildStep] = []
        self.step = ""
        self._number = 0
        self._open = False
        self.lines: list[str] = []
        self.image_id: str | None = None
        self.error: str | None = None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "stream" in chunk:
            self._partial += str(chunk["stream"])
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                self._line(line.rstrip("\r"))
        elif "status" in chunk:  # pulling the base image
            status = f"{chunk.get('id', '')}: {chunk['status']}".lstrip(": ")
            self._line(f"{status} {chunk.get('progress', '')}".rstrip())
        if "aux" in chunk and isinstance(chunk["aux"], Mapping) and "ID" in chunk["aux"]:
            self.image_id = str(chunk["aux"]["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = str(detail.get("message") or chunk.get("error") or chunk)
            self._line(self.error)

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self._close_step()

    def _line(self, line: str) -> None:
        # The engine colours a step's stderr with ANSI codes that can land mid-line between
        # stdout and stderr chunks; users and error messages want the plain text.
        line = _ANSI_RE.sub("", line)
        self._progress(line)
        step = _STEP_RE.match(line)
        if step:
            self._close_step()
            self._open = True
            self._number = int(step.group(1))
            self.step = step.group(3)
            self._cached = self.step.upper().startswith("FROM ")
            self.lines = []
            return
        if line.strip() == "---> Using cache":
            self._cached = True
        self.lines.append(line)
        del self.lines[: -OUTPUT_LINES_KEPT * 4]

    def _close_step(self) -> None:
        if self._open and self.error is None:
            self.steps.append(BuildStep(self._number, self.step, self._cached))
        self._open = False


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _build_error(plan: BuildPlan, output: _BuildOutput) -> ImageBuildError:
    step = output.step
    tail = [line for line in output.lines if line.strip()][-OUTPUT_LINES_KEPT:]
    if step.upper().startswith("FROM "):
        base = step.split()[1] if len(step.split()) > 1 else step
        return ImageBuildError(
            f"The base image {base} cannot be found: it is not on this Docker engine and pulling "
            f"it failed ({output.error}). Pull or build it first, or choose another base image: "
            "DeploymentImage(base_image=...), the NBFLOWS_BASE_IMAGE environment variable, or "
            "the work pool's base_image.",
            step=step,
            output=tail,
        )
    shown = "\n".join(f"  {line}" for line in tail)
    if not step:  # refused before the first step, e.g. a Dockerfile that does not parse
        return ImageBuildError(
            f"Docker could not build {plan.reference}: {output.error}", step=step, output=tail
        )
    return ImageBuildError(
        f"Building image {plan.reference} failed at step '{step}': {output.error}\n"
        f"Last output of that step:\n{shown}",
        step=step,
        output=tail,
    )
