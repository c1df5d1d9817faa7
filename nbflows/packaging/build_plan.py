"""Planning a build: everything that goes into it (Dockerfile, context files, the flow notebook)
and its content tag, a hash of all of it (`plan_build`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nbflows.errors import InvalidInput
from nbflows.packaging.build_context import BuildContext, list_context_files
from nbflows.packaging.dockerfile import (
    check_flow_notebook_name,
    derived_dockerfile,
    generate_dockerfile,
)
from nbflows.packaging.images import (
    CONTEXT_EXTRAS_DIR,
    LABEL_CONTEXT_HASH,
    DeploymentImage,
    default_base_image,
)
from nbflows.packaging.nbflows_wheel import NbflowsPackage, nbflows_package

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["BuildPlan", "plan_build"]
DOCKERFILE_IN_CONTEXT = f"{CONTEXT_EXTRAS_DIR}/Dockerfile"
_TAG_LENGTH = 12


# --------------------------------------------------------------------------------------------
# Planning: everything that goes into the build, and its content tag


@dataclass(frozen=True)
class BuildPlan:
    """What `build_image` would send to Docker, and the reference it would build."""

    reference: str
    context_hash: str
    dockerfile: str
    context: BuildContext
    files: tuple[str, ...]
    extras: Mapping[str, bytes]
    buildargs: Mapping[str, str]
    platform: str | None
    base_image: str | None
    labels: Mapping[str, str]
    #: Lines to tell the user: files of the project that are not sent, and why.
    warnings: tuple[str, ...] = ()


def plan_build(
    image: DeploymentImage,
    context: BuildContext,
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
    *,
    flow_name: str | None = None,
    package: NbflowsPackage | None = None,
) -> BuildPlan:
    """Plan the build of `flow_notebook` (a path to the extracted `.ipynb`, or a notebook) in
    `context`: the Dockerfile, the context files (`list_context_files`), and the reference. With `image.tag=None` the tag is the first 12 hex digits of a
    sha256 over the Dockerfile, every context file's path and bytes, the files nbflows adds, the
    build args and the platform: the same content always gives the same tag. `package` (default
    `nbflows_package()`) is how the generated Dockerfile installs nbflows.
    """
    notebook_name, notebook_bytes = _flow_notebook_bytes(flow_notebook)
    listing = list_context_files(context.root)
    files = listing.files
    extras: dict[str, bytes] = {f"{CONTEXT_EXTRAS_DIR}/{notebook_name}": notebook_bytes}
    base_image: str | None = None
    if image.dockerfile == "auto":
        base_image = image.base_image or default_base_image()
        package = package or nbflows_package()
        if package.wheel is not None:
            extras[f"{CONTEXT_EXTRAS_DIR}/{package.wheel.name}"] = package.wheel.read_bytes()
        dockerfile = generate_dockerfile(
            base_image,
            has_requirements="requirements.txt" in files,
            nbflows_requirement=package.requirement,
            notebook_relpath=context.notebook_relpath,
            flow_notebook_name=notebook_name,
            flow_name=flow_name,
        )
    else:
        user_path = Path(image.dockerfile).expanduser()
        if not user_path.is_absolute():
            user_path = context.root / user_path
        try:
            user_text = user_path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidInput(
                f"Dockerfile {user_path} not found (dockerfile= is relative to the build "
                f"context {context.root}); give an existing file or dockerfile='auto'",
                dockerfile=str(user_path),
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read Dockerfile {user_path}: {exc}") from exc
        dockerfile = derived_dockerfile(user_text, notebook_name, flow_name)
    extras[DOCKERFILE_IN_CONTEXT] = dockerfile.encode()

    buildargs = dict(image.buildargs or {})
    context_hash = _content_hash(context.root, files, extras, buildargs, image.platform)
    tag = image.tag or context_hash[:_TAG_LENGTH]
    return BuildPlan(
        reference=f"{image.name}:{tag}",
        context_hash=context_hash,
        dockerfile=dockerfile,
        context=context,
        files=files,
        extras=extras,
        buildargs=buildargs,
        platform=image.platform,
        base_image=base_image,
        labels={LABEL_CONTEXT_HASH: context_hash},
        warnings=listing.warnings(),
    )


def _flow_notebook_bytes(
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
) -> tuple[str, bytes]:
    if isinstance(flow_notebook, Mapping):
        import nbformat

        from nbflows.notebooks.loading import notebook_to_json

        node = nbformat.from_dict(dict(flow_notebook))
        return "flow.ipynb", notebook_to_json(node).encode()
    path = Path(flow_notebook)
    check_flow_notebook_name(path.name)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the flow notebook {path}: {exc}") from exc


def _content_hash(
    root: Path,
    files: Iterable[str],
    extras: Mapping[str, bytes],
    buildargs: Mapping[str, str],
    platform: str | None,
) -> str:
    digest = hashlib.sha256()

    def add(*parts: bytes) -> None:
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)

    for rel in files:
        path = root / rel
        if path.is_symlink():
            add(b"L", rel.encode(), os.readlink(path).encode())
        elif path.is_dir():
            add(b"D", rel.encode())
        elif path.is_file():
            # The executable bit matters in the image; times and owners do not.
            executable = b"x" if os.access(path, os.X_OK) else b"-"
            add(b"F", rel.encode(), executable, path.read_bytes())
    for name in sorted(extras):
        add(b"E", name.encode(), extras[name])
    add(b"A", json.dumps(dict(buildargs), sort_keys=True).encode())
    add(b"P", (platform or "").encode())
    return digest.hexdigest()


def write_context_tar(plan: BuildPlan, fileobj: IO[bytes]) -> None:
    root = plan.context.root
    with tarfile.open(mode="w", fileobj=fileobj) as archive:
        for rel in plan.files:
            full = root / rel
            info = archive.gettarinfo(str(full), arcname=rel)
            if info is None:  # a socket: Docker skips those too
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(full, "rb") as fh:
                    archive.addfile(info, fh)
            else:
                archive.addfile(info)
        for name, data in sorted(plan.extras.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
