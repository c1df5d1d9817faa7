"""The run's output folder on a Dask worker (`NBFLOWS_OUTPUT_DIR`): the task packs what the run
wrote there into a zip that travels back with its result (a Dask worker shares no disk with
the nbflows worker), and the nbflows worker unpacks it into a folder of its own, whose files
become the run's artifacts as on the other pool types (`BaseWorker._store_artifacts`)."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile

from nbflows.results.artifacts import collect_output_folder

__all__ = ["pack_output_folder", "unpack_output_files"]


def pack_output_folder(folder: str) -> bytes | None:
    """The files under `folder` as a zip (symbolic links left out); None when there are none."""
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in collect_output_folder(folder):
            archive.write(path, name)
            count += 1
    return buffer.getvalue() if count else None


def unpack_output_files(packed: bytes, run_id: str) -> str:
    """A new folder on this machine holding the packed files (names leaving it are refused)."""
    folder = tempfile.mkdtemp(prefix=f"nbflows-output-{run_id}-")
    root = os.path.realpath(folder)
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        for name in archive.namelist():
            target = os.path.realpath(os.path.join(root, name))
            if os.path.commonpath([root, target]) != root:
                raise ValueError(
                    f"the run's output files hold a path outside their folder: {name!r}"
                )
        archive.extractall(root)
    return folder
