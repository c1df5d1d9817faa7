"""Converting an executed notebook to an export format: HTML (nbconvert), PDF (nbconvert's
webpdf exporter printing the HTML with a headless Chromium through Playwright).

Used where the notebook is: the worker exports each run of a deployment with `exports` right
after the run (the server only keeps the file), the server exports an older run on request (on
threads of its own: `Orchestrator.offload`). No database here: workers import it.

Which Chromium: `NBFLOWS_CHROMIUM` names one, else a Chromium found on PATH (`chromium`,
`chromium-browser`, `google-chrome`), else Playwright's own (`playwright install chromium`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from nbflows.errors import InvalidInput, NotAvailable

ExportFormat = Literal["html", "pdf"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
MEDIA_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}
#: A Chromium (or Chrome) executable for PDF exports.
CHROMIUM_ENV = "NBFLOWS_CHROMIUM"
_SYSTEM_CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def export_name(fmt: str) -> str:
    return f"notebook.{fmt}"


def check_format(fmt: str) -> ExportFormat:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


def find_chromium() -> str | None:
    """The Chromium executable PDF exports print with: `NBFLOWS_CHROMIUM`, else a Chromium on
    PATH; None leaves the choice to Playwright (its own download, `playwright install chromium`)."""
    named = os.environ.get(CHROMIUM_ENV, "").strip()
    if named:
        return shutil.which(named) or named
    for name in _SYSTEM_CHROMIUMS:
        found = shutil.which(name)
        if found:
            return found
    return None


def convert(notebook: str | Mapping[str, Any], fmt: ExportFormat) -> bytes:
    """The notebook (JSON text or dict) in `fmt`. Slow (nbconvert; a browser for PDF): never
    on an event loop. NotAvailable when this machine cannot make PDF."""
    import nbformat  # lazily: nbconvert and its templates are heavy

    nb = (
        nbformat.reads(notebook, as_version=4)
        if isinstance(notebook, str)
        else nbformat.from_dict(dict(notebook))
    )
    if fmt == "html":
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        return body.encode("utf-8")
    return _webpdf(nb)


def _webpdf(nb: Any) -> bytes:
    try:
        exporter = _pdf_exporter_class()(executable_path=find_chromium())
    except ImportError as err:
        raise NotAvailable(_no_pdf(f"{err.name or err} is not installed")) from None
    try:
        pdf, _ = exporter.from_notebook_node(nb)
    except Exception as err:  # no usable browser: say what is missing
        raise NotAvailable(_no_pdf(f"{type(err).__name__}: {err}".strip())) from None
    return bytes(pdf)


def _no_pdf(reason: str) -> str:
    return (
        f"PDF export is not available on this machine ({reason[:300]}); it needs nbconvert's "
        f"webpdf exporter (pip install 'nbconvert[webpdf]') and a Chromium ({CHROMIUM_ENV}, "
        "a chromium on PATH, or `playwright install chromium`). Valid here: html."
    )


def _pdf_exporter_class() -> type:
    """nbconvert's WebPDFExporter (its webpdf template and page options), printing with the
    Chromium `executable_path` names: nbconvert's own `run_playwright` (7.x) launches only
    Playwright's downloaded browser. ImportError without nbconvert or Playwright."""
    import playwright.sync_api  # noqa: F401  (ImportError early: PDF needs Playwright)
    from nbconvert import WebPDFExporter
    from traitlets import Unicode

    class ChromiumPDFExporter(WebPDFExporter):
        executable_path = Unicode(None, allow_none=True)

        def run_playwright(self, html: str) -> bytes:
            from playwright.sync_api import sync_playwright

            args = list(self.browser_args)
            # Chromium refuses its sandbox to root (containers): the page is the notebook's own.
            if self.disable_sandbox or (hasattr(os, "geteuid") and os.geteuid() == 0):
                args.append("--no-sandbox")
            with tempfile.TemporaryDirectory(prefix="nbflows-pdf-") as folder:
                page_file = Path(folder) / "notebook.html"
                page_file.write_text(html, encoding="utf-8")
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(
                        executable_path=self.executable_path,
                        args=args,
                        handle_sigint=False,
                        handle_sigterm=False,
                        handle_sighup=False,
                    )
                    try:
                        page = browser.new_page()
                        page.emulate_media(media="print")
                        page.goto(page_file.as_uri(), wait_until="networkidle")
                        page.wait_for_timeout(self.page_render_timeout)
                        return bytes(page.pdf(print_background=True))
                    finally:
                        browser.close()

    return ChromiumPDFExporter
