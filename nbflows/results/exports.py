"""Exports kept with a run: its executed notebook as HTML or PDF (`conversion`).

A deployment with `exports` has every run exported by its worker right after the run, which
sends the file (`store_export`); any other run is exported when someone first asks for it
(`find_export`, then the server converts off its database threads and `keep_export`). Exports
are kept in the result store until the notebook changes (a later attempt's).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from nbflows.store import tables as t

from . import run_files
from .conversion import ExportFormat, export_name
from .store import ResultStore


def store_export(
    s: Session,
    results: ResultStore,
    run_id: str,
    fmt: ExportFormat,
    data: bytes,
    *,
    worker: str,
    fence: int | None,
) -> t.RunFile:
    """Keep the export a worker made of the run it holds. Its size is bounded by the request's
    (`max_body_size`) only: it is made from a notebook the server accepted already, and an
    HTML page of a notebook is larger than the notebook (styles, escaped outputs)."""
    from nbflows.services import flow_runs

    run = flow_runs.get_flow_run(s, run_id, lock=True)
    flow_runs.check_holder(run, worker, fence)
    return run_files.put_run_file(s, results, run_id, "export", export_name(fmt), data)


def find_export(
    s: Session, results: ResultStore, run_id: str, fmt: ExportFormat
) -> tuple[bytes | None, str | None]:
    """(the kept export, None), or (None, the notebook's JSON text to export) when there is
    none yet. NotFound for a run without a notebook."""
    from nbflows.services import flow_runs

    name = export_name(fmt)
    if run_files.find_run_file(s, run_id, "export", name) is not None:
        return run_files.read_run_file(s, results, run_id, "export", name)[1], None
    return None, flow_runs.read_notebook(s, run_id, results)


def keep_export(
    s: Session, results: ResultStore, run_id: str, fmt: ExportFormat, data: bytes
) -> None:
    """Keep an export made on request (the run may have been removed meanwhile: then not)."""
    if s.get(t.FlowRun, run_id) is not None:
        run_files.put_run_file(s, results, run_id, "export", export_name(fmt), data)


def discard_exports(s: Session, results: ResultStore, run_id: str) -> None:
    """Forget the exports of a notebook that was replaced (a later attempt's)."""
    for row in run_files.list_run_files(s, run_id, "export"):
        results.delete(row.key)
        s.delete(row)
