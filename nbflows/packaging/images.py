"""Deployment images: what the user asks for (`DeploymentImage`), image references, the
labels and paths of an nbflows image, and the errors of building and pushing one.

The story of a build is told in `nbflows.packaging.docker_build`; this module stays cheap to
import in a kernel (no `docker`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from nbflows.errors import InvalidInput

__all__ = [
    "CONTEXT_EXTRAS_DIR",
    "FLOW_NOTEBOOK_DIR",
    "LABEL_CONTEXT_HASH",
    "LABEL_FLOW",
    "LABEL_FLOW_NOTEBOOK",
    "PROJECT_DIR",
    "VENV_DIR",
    "DeploymentImage",
    "ImageBuildError",
    "ImagePushError",
    "default_base_image",
    "split_image_reference",
]

#: Where things live inside an image built by nbflows.
VENV_DIR = "/opt/nbflows/venv"
PROJECT_DIR = "/opt/nbflows/project"
FLOW_NOTEBOOK_DIR = "/opt/nbflows/flow"
#: Files nbflows adds to the build context (Dockerfile, flow notebook, nbflows wheel) go under
#: this folder of the context; a folder of that name in the project itself is not sent.
CONTEXT_EXTRAS_DIR = ".nbflows"

LABEL_FLOW = "org.nbflows.flow"
LABEL_FLOW_NOTEBOOK = "org.nbflows.flow-notebook"
LABEL_CONTEXT_HASH = "org.nbflows.context-hash"

#: Files that mark a project's root folder (besides a `.git` folder).
PROJECT_MARKERS = ("requirements.txt", "pyproject.toml")
OUTPUT_LINES_KEPT = 30

_NAME_RE = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Errors


class ImageBuildError(InvalidInput):
    """A build failed: `step` is the failing Dockerfile instruction, `output` its last lines."""

    def __init__(self, message: str, *, step: str = "", output: Iterable[str] = ()) -> None:
        lines = list(output)
        super().__init__(message, step=step, output=lines)
        self.step = step
        self.output = lines


class ImagePushError(InvalidInput):
    """The registry (or the engine) refused a push; the message is the registry's own."""


# --------------------------------------------------------------------------------------------
# What the user asks for


@dataclass
class DeploymentImage:
    """The image a deployment runs in.

    `name` is the repository (`sales`, `registry.example:5000/team/sales`); `name` may also carry
    the tag (`sales:v1`). With `tag=None` the tag is computed from the content of the build
    (Dockerfile, project files, flow notebook, build args, platform): building the same thing
    twice gives the same tag and no second build. `dockerfile="auto"` generates the Dockerfile;
    any other value is the path of the user's Dockerfile, relative to the build context.
    `base_image` (for the generated Dockerfile) defaults to `default_base_image()`.
    """

    name: str
    tag: str | None = None
    dockerfile: str = "auto"
    base_image: str | None = None
    platform: str | None = None
    buildargs: dict[str, str] | None = None

    def __post_init__(self) -> None:
        repository, tag = split_image_reference(self.name)
        if tag is not None:
            if self.tag is not None and self.tag != tag:
                raise InvalidInput(
                    f"image name {self.name!r} carries the tag {tag!r} but tag={self.tag!r} "
                    "was given too; give the tag once"
                )
            self.name, self.tag = repository, tag
        if not _NAME_RE.match(self.name):
            raise InvalidInput(
                f"invalid image name {self.name!r}: use lowercase letters, digits and "
                "separators (. _ -), optionally path components after a registry host "
                "(registry:5000/team/flows)"
            )
        if self.tag is not None and not _TAG_RE.match(self.tag):
            raise InvalidInput(
                f"invalid image tag {self.tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'"
            )
        if not self.dockerfile:
            raise InvalidInput("dockerfile must be 'auto' or the path of a Dockerfile")
        if self.buildargs is not None:
            if not isinstance(self.buildargs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.buildargs.items()
            ):
                raise InvalidInput("buildargs must map names to string values")
            self.buildargs = dict(self.buildargs)

    @property
    def reference(self) -> str:
        """`name:tag`. Without an explicit tag the tag comes from the content: see `plan_build`."""
        if self.tag is None:
            raise InvalidInput(
                f"image {self.name!r} has no tag yet: its tag is computed from the build's "
                "content; use plan_build(...).reference or build_image(...).reference"
            )
        return f"{self.name}:{self.tag}"


def default_base_image() -> str:
    """`NBFLOWS_BASE_IMAGE` when set, else `python:X.Y-slim` for the running interpreter."""
    configured = os.environ.get("NBFLOWS_BASE_IMAGE", "").strip()
    if configured:
        return configured
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def split_image_reference(reference: str) -> tuple[str, str | None]:
    """The one reading of an image reference: `registry:5000/team/x:v1` -> (`registry:5000/team/x`,
    `v1`); a registry port is not a tag, a digest (`x@sha256:...`) stays whole; no tag -> None."""
    if "@" in reference:
        return reference, None
    head, sep, tail = reference.rpartition(":")
    if sep and head and "/" not in tail:
        return head, tail or None
    return reference, None
