"""The project files a run on Dask takes with it: no file system is shared with the cluster.

The files are those an image build of the deployment would hold (`nbflows.packaging.images`: the project
root of the deployment's notebook, without what .gitignore/.dockerignore leave out, and never
stores, databases or Jupyter runtime files), zipped in memory once per deployment version.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MAX_PROJECT_BYTES", "Project", "ProjectFiles"]

#: Projects larger than this (zipped) are not sent; the run gets its notebook only and says why.
MAX_PROJECT_BYTES = 64 * 1024 * 1024
#: Packed projects of this many deployment versions are kept in memory.
CACHE_SIZE = 16


@dataclass(frozen=True)
class Project:
    """A packed project: the zip (None: nothing to send), the notebook's folder inside it, and
    a note for the run's log when files could not be sent."""

    archive: bytes | None
    notebook_dir: str = ""
    note: str = ""


class ProjectFiles:
    """Packed projects by (deployment id, version); thread-safe."""

    def __init__(self) -> None:
        self._packed: OrderedDict[tuple[str, Any], Project] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, deployment: dict[str, Any], version: int | None) -> Project:
        key = (str(deployment.get("id")), version)
        with self._lock:
            if key in self._packed:
                self._packed.move_to_end(key)
                return self._packed[key]
        project = pack(deployment)
        with self._lock:
            self._packed[key] = project
            while len(self._packed) > CACHE_SIZE:
                self._packed.popitem(last=False)
        return project


def pack(deployment: dict[str, Any]) -> Project:
    """The deployment's project folder zipped, when it exists on this machine."""
    from nbflows.packaging.build_context import find_build_context, list_context_files

    path = deployment.get("path") or ""
    folder = deployment.get("working_dir") or (os.path.dirname(path) if path else "")
    if not folder or not os.path.isdir(folder):
        return Project(
            None,
            note=f"the deployment's folder {folder!r} is not on this worker's machine: the run "
            "gets its notebook only",
        )
    notebook = Path(path) if path and os.path.isabs(path) else Path(folder) / "notebook.ipynb"
    root = find_build_context(notebook)
    notebook_dir = Path(folder).resolve().relative_to(root).as_posix()
    files = list_context_files(root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in files.files:
            full = root / rel
            if full.is_file():
                archive.write(full, rel)
            if buffer.tell() > MAX_PROJECT_BYTES:
                return Project(
                    None,
                    note=f"the project folder {root} is larger than {MAX_PROJECT_BYTES >> 20} MB "
                    "zipped: the run gets its notebook only (set the job variable "
                    "project_files to false to say so, or make the project smaller)",
                )
    note = "; ".join(files.warnings())
    return Project(buffer.getvalue(), "" if notebook_dir == "." else notebook_dir, note)
