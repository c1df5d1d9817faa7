"""Artifacts: files a run writes under its output folder (`NBFLOWS_OUTPUT_DIR` in the run's
environment), collected by the worker after the run and kept in the result store.

Server side: `store_artifact` (size limits, the holder's fence). Worker side:
`collect_output_folder` lists what a run left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nbflows.services.limits import Limits, too_large

if TYPE_CHECKING:  # the worker side imports this module too: no SQLAlchemy there
    from sqlalchemy.orm import Session

    from nbflows.store import tables as t

    from .store import ResultStore

#: The variable naming the folder a run writes its artifacts to.
OUTPUT_DIR_ENV = "NBFLOWS_OUTPUT_DIR"


def store_artifact(
    s: Session,
    results: ResultStore,
    run_id: str,
    name: str,
    data: bytes,
    limits: Limits,
    *,
    worker: str | None = None,
    fence: int | None = None,
) -> t.RunFile:
    """Keep `data` as the run's artifact `name`; over a size limit: TooLarge naming it."""
    from nbflows.services import flow_runs

    from . import run_files

    run_files.check_artifact_name(name)
    run = flow_runs.get_flow_run(s, run_id, lock=worker is not None)
    if worker is not None:
        flow_runs.check_holder(run, worker, fence)
    if len(data) > limits.max_artifact_size:
        raise too_large(f"artifact '{name}'", len(data), limits, "max_artifact_size")
    previous = run_files.find_run_file(s, run_id, "artifact", name)
    kept = run_files.total_size(s, run_id, "artifact") - (previous.size if previous else 0)
    if kept + len(data) > limits.max_run_artifacts:
        total = kept + len(data)
        raise too_large(
            f"the total of the run's artifacts with '{name}'", total, limits, "max_run_artifacts"
        )
    return run_files.put_run_file(s, results, run_id, "artifact", name, data)


def collect_output_folder(folder: str | os.PathLike[str]) -> Iterator[tuple[str, Path]]:
    """(artifact name, file) for every regular file under `folder`, in name order; symbolic
    links are skipped (a run must not hand out files from elsewhere on the worker)."""
    root = Path(folder)
    if not root.is_dir():
        return
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)
