"""Exports: a run's executed notebook as HTML (nbconvert), or PDF through nbconvert's webpdf
exporter where a Chromium for Playwright exists. Made on request (or for every run of a
deployment with `exports`), kept in the result store until the notebook changes."""

from __future__ import annotations

from typing import Literal, get_args

from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput

from . import run_files
from .store import ResultStore

ExportFormat = Literal["html", "pdf"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
MEDIA_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def export_name(fmt: str) -> str:
    return f"notebook.{fmt}"


def check_format(fmt: str) -> ExportFormat:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


def convert(notebook_json: str, fmt: ExportFormat) -> bytes:
    """The notebook in `fmt`. Slow (nbconvert, a browser for PDF): never on the event loop."""
    import nbformat

    nb = nbformat.reads(notebook_json, as_version=4)
    if fmt == "html":
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        return body.encode("utf-8")
    try:
        from nbconvert import WebPDFExporter

        pdf, _ = WebPDFExporter().from_notebook_node(nb)
    except Exception as err:  # no playwright, no Chromium: say what is missing
        raise InvalidInput(
            f"PDF export is not available on this server ({type(err).__name__}: {err}); it needs "
            "nbconvert[webpdf] with a Chromium for Playwright. HTML export works everywhere."
        ) from None
    return bytes(pdf)


def read_export(s: Session, results: ResultStore, run_id: str, fmt: ExportFormat) -> bytes:
    """The run's notebook in `fmt`, made now if it was not kept already."""
    from nbflows.services import flow_runs

    name = export_name(fmt)
    if run_files.find_run_file(s, run_id, "export", name) is not None:
        return run_files.read_run_file(s, results, run_id, "export", name)[1]
    data = convert(flow_runs.read_notebook(s, run_id, results), fmt)
    run_files.put_run_file(s, results, run_id, "export", name, data)
    return data


def discard_exports(s: Session, results: ResultStore, run_id: str) -> None:
    """Forget the exports of a notebook that was replaced (a later attempt's)."""
    for row in run_files.list_run_files(s, run_id, "export"):
        results.delete(row.key)
        s.delete(row)
