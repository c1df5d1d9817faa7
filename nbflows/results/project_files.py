"""Project files: the folder a deployment's notebook needs (`data/x.csv` beside it), carried
with each deployment version so that a process worker on another machine can run it.

At deploy the notebook's project folder (`build_context.find_build_context`, with the same ignore rules
as an image's build context: `build_context.list_context_files`) is stored file by file in the result
store under the file's sha256 (`blobs/sha256/..`): a file already stored is not stored again,
whichever deployment or version it came with. The version keeps the manifest. A worker that
lacks the deployment's folder materialises the manifest into a folder of its own
(`materialise`), fetching only the files it has not cached.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflows.errors import NotFound
from nbflows.services.limits import Limits, too_large

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from nbflows.store import tables as t

    from .store import ResultStore

BLOBS = "blobs/sha256"
#: Marks a materialised folder as complete (written last).
COMPLETE = ".nbflows-project-complete"


def blob_key(sha256: str) -> str:
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


def bundle_project(
    results: ResultStore, notebook_path: str | os.PathLike[str], limits: Limits
) -> dict[str, Any]:
    """Store the notebook's project folder; its manifest: `{"notebook_dir": folder of the
    notebook inside the project, "files": [{"path", "sha256", "size"}]}`."""
    from nbflows.packaging.build_context import find_build_context, list_context_files

    notebook = Path(notebook_path).resolve()
    root = find_build_context(notebook)
    files: list[dict[str, Any]] = []
    total = 0
    for rel in list_context_files(root).files:
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        total += len(data)
        if total > limits.max_project_size:
            raise too_large(
                f"the project folder {root} (files beside the notebook, as an image's build "
                "context would take them; a .dockerignore leaves some out)",
                total,
                limits,
                "max_project_size",
            )
        sha = hashlib.sha256(data).hexdigest()
        if not results.exists(blob_key(sha)):
            results.put(blob_key(sha), data)
        files.append({"path": rel, "sha256": sha, "size": len(data)})
    return {"notebook_dir": notebook.parent.relative_to(root).as_posix(), "files": files}


def carry_project_files(
    s: Session, results: ResultStore, deployment: t.Deployment, limits: Limits
) -> None:
    """Give the deployment's new version its project files (process pools, notebooks on
    this server's disk; docker pools carry theirs in the image)."""
    from nbflows.store import tables as t

    if deployment.pool.type != "process" or not os.path.isfile(deployment.path):
        return
    version = s.get(t.DeploymentVersion, (deployment.id, deployment.version))
    if version is not None:
        version.files = bundle_project(results, deployment.path, limits)


def project_manifest(s: Session, ref: str, version: int | None) -> dict[str, Any]:
    from nbflows.services.deployments import get_deployment
    from nbflows.store import tables as t

    d = get_deployment(s, ref)
    row = s.get(t.DeploymentVersion, (d.id, version or d.version))
    if row is None:
        raise NotFound(f"deployment '{d.flow_name}/{d.name}' has no version {version}")
    return row.files or {"notebook_dir": ".", "files": []}


def read_project_file(s: Session, results: ResultStore, ref: str, sha256: str) -> bytes:
    """A file of one of the deployment's versions, by content (only those: a deployment's
    reader cannot fish other deployments' files out of the store)."""
    from sqlalchemy import select

    from nbflows.services.deployments import get_deployment
    from nbflows.store import tables as t

    d = get_deployment(s, ref)
    manifests = s.scalars(
        select(t.DeploymentVersion.files).where(t.DeploymentVersion.deployment_id == d.id)
    )
    if not any(f.get("sha256") == sha256 for m in manifests if m for f in m.get("files", [])):
        raise NotFound(f"deployment '{d.flow_name}/{d.name}' has no project file {sha256}")
    return results.get(blob_key(sha256))


def materialise(manifest: dict[str, Any], folder: Path, fetch: Callable[[str], bytes]) -> Path:
    """Write the manifest's files into `folder` (once: a complete folder is reused), taking
    files from this machine's cache of contents before asking `fetch(sha256)`. Returns the
    notebook's folder inside it."""
    notebook_dir = folder / manifest.get("notebook_dir", ".")
    if (folder / COMPLETE).exists():
        return notebook_dir
    cache = Path(tempfile.gettempdir()) / "nbflows-project-cache"
    cache.mkdir(parents=True, exist_ok=True)
    for item in manifest.get("files", []):
        rel, sha = str(item["path"]), str(item["sha256"])
        target = (folder / rel).resolve()
        if not target.is_relative_to(folder.resolve()):
            continue  # a manifest never names such paths; never write outside the folder
        cached = cache / sha
        if not cached.is_file():
            data = fetch(sha)
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError(f"project file {rel} arrived damaged (sha256 differs)")
            partial = cached.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(data)
            os.replace(partial, cached)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(cached.read_bytes())
    notebook_dir.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE).write_text("")
    return notebook_dir
