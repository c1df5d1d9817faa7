"""The status line of a `%%flow` cell, in a real kernel against a real server: one output that
shows RUNNING when the attempt starts and is updated in place to the run's end, with the
JupyterLab extension's MIME type and a text/plain line for other front ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from nbflows.kernel_magics.status_line import MIME_TYPE

from .servers import NBFLOWS_ENV, Server
from .test_notebook_journey import kernel_env, run_notebook  # noqa: F401


def status_outputs(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if MIME_TYPE in o.get("data", {})]


def write(tmp: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path = tmp / "status.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_flow_cell_shows_its_run_state_duration_and_attempt(
    server: Server,
    kernel_env: dict[str, str],  # noqa: F811
) -> None:
    path = write(
        server.root,
        "%load_ext nbflows",
        "%%flow hello\nprint('hi')",
        "%%flow broken\nraise ValueError('no')",
    )
    nb = run_notebook(path, kernel_env, allow_errors=True)
    [done] = status_outputs(nb.cells[1])
    # nbclient applies the update to the output the display id names: one line, final state.
    bundle = done["data"][MIME_TYPE]
    assert (bundle["flow_name"], bundle["state"]["type"], bundle["attempt"]) == (
        "hello",
        "COMPLETED",
        1,
    )
    assert bundle["duration"] >= 0
    assert done["data"]["text/plain"].startswith("flow hello: Completed in ")
    [failed] = status_outputs(nb.cells[2])
    assert failed["data"][MIME_TYPE]["state"]["type"] == "FAILED"
    assert "no" in failed["data"][MIME_TYPE]["state"]["message"]
    [run] = server.client().list_flow_runs(flow_name="hello")
    assert run["state"]["type"] == "COMPLETED"
    # Where the server's id was known when the cell ended, the line links to the run.
    assert bundle["id"] in (None, run["id"])


def test_a_flow_cell_without_a_server_shows_no_status_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV}
    env.update(
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    nb = run_notebook(write(tmp_path, "%load_ext nbflows", "%%flow hello\nprint('hi')"), env)
    assert status_outputs(nb.cells[1]) == []
    assert any("hi" in o.get("text", "") for o in nb.cells[1].outputs)
