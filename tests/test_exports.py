"""Exports of runs' executed notebooks: made by the worker right after each run of a deployment
with `exports` (the server only keeps them), or by the server on request off its database
threads; PDF through nbconvert's webpdf exporter and the machine's Chromium.

A real server with its embedded worker (a process of its own), the CLI as a user types it.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import DATA, Server, start_server
from .test_run_outputs import deploy, results_folder, run_to_end

pytestmark = pytest.mark.slow


def need_chromium() -> None:
    """Skip (fail under CI) without the parts PDF needs: Playwright and a Chromium."""
    from nbflows.results.conversion import find_chromium

    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install 'nbconvert[webpdf]')"
    if missing is None and find_chromium() is None:
        missing = "no chromium on PATH (install Debian's chromium package)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)


def start(tmp_path: Path, **env: str) -> Server:
    srv = start_server(tmp_path, env=env or None)
    shutil.copy(DATA / "artifacts.ipynb", srv.root / "artifacts.ipynb")
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def log_of(server: Server, run_id: str) -> list[str]:
    with server.client() as api:
        return [x["message"] for x in api.read_logs(run_id)["items"]]


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_worker_exports_each_run_of_a_deployment_and_the_server_keeps_it(
    server: Server,
) -> None:
    deploy(server, "--name", "by-worker", "--export", "html")
    run = run_to_end(server, "artifacts/by-worker", rows=2)

    kept = results_folder(server) / "runs" / run["id"] / "exports" / "notebook.html"
    assert "report.csv" in kept.read_text()
    lines = log_of(server, run["id"])
    said = [x for x in lines if x.startswith("kept the html export")]
    assert said, lines  # the worker's line: the worker converted it
    downloaded = server.http("GET", f"flow_runs/{run['id']}/exports/html")
    assert downloaded.status_code == 200 and downloaded.content == kept.read_bytes()
    # Only the worker holding the run under its claim's fence sends exports.
    base = f"flow_runs/{run['id']}/exports/html"
    stale = {"worker": run["worker_name"], "fence": 10**9}
    late = server.http("PUT", base, params=stale, content=b"<p>x</p>")
    assert late.status_code == 409, late.text
    anyone = server.http("PUT", base, content=b"<p>x</p>")
    assert anyone.status_code == 422 and "worker" in anyone.json()["message"]
    assert kept.read_text() == downloaded.text  # neither replaced it


def test_a_runs_pdf_downloads_with_the_cli(server: Server, tmp_path: Path) -> None:
    need_chromium()
    deploy(server, "--name", "pdf")
    run = run_to_end(server, "artifacts/pdf", rows=3)

    done = server.cli(
        "flow-run",
        "notebook",
        run["id"],
        "--to",
        "pdf",
        "-o",
        str(tmp_path / "run.pdf"),
        timeout=400,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    data = (tmp_path / "run.pdf").read_bytes()
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    assert "wrote" in text and "report.csv" in text, text[:500]


def test_a_deployment_exporting_pdf_has_it_made_by_the_worker(server: Server) -> None:
    need_chromium()
    deploy(server, "--name", "pdf-each", "--export", "pdf")
    run = run_to_end(server, "artifacts/pdf-each")

    lines = log_of(server, run["id"])
    assert any(x.startswith("kept the pdf export") for x in lines), lines
    kept = results_folder(server) / "runs" / run["id"] / "exports" / "notebook.pdf"
    assert "report.csv" in pdf_text(kept.read_bytes())


def test_without_a_chromium_pdf_is_refused_naming_html(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-chromium")
    srv = start(tmp_path, NBFLOWS_CHROMIUM=missing)
    try:
        deploy(srv, "--name", "no-pdf", "--export", "pdf")
        run: dict[str, Any] = run_to_end(srv, "artifacts/no-pdf")
        asked = srv.http("GET", f"flow_runs/{run['id']}/exports/pdf")
        cli = srv.cli("flow-run", "notebook", run["id"], "--to", "pdf", "-o", "x.pdf")
        lines = log_of(srv, run["id"])
    finally:
        srv.stop()

    assert asked.status_code == 501, asked.text
    message = asked.json()["message"]
    assert "PDF export is not available" in message and "Valid here: html" in message
    assert cli.returncode != 0 and "Valid here: html" in cli.stdout + cli.stderr
    # The run itself completed; its log says why it has no PDF.
    assert any(x.startswith("no pdf export") and "html" in x for x in lines), lines
