"""The tutorial notebook run by a real kernel against a real server: `%%flow` cells recorded,
the deploy cell deploying, the deployment running on the process pool; and bad input in cells."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from .servers import Server


@pytest.fixture
def kernel_env(server: Server) -> Iterator[dict[str, str]]:
    yield {**os.environ, "NBFLOWS_API_URL": server.api, "NBFLOWS_API_TOKEN": server.token}


def run_notebook(path: Path, env: dict[str, str], allow_errors: bool = False) -> Any:
    """Execute a notebook top to bottom in a kernel started as Jupyter starts it for that file."""
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**env, "JPY_SESSION_NAME": str(path)}, cwd=str(path.parent))
    try:
        NotebookClient(nb, km=km, timeout=120, allow_errors=allow_errors).execute()
    finally:
        km.shutdown_kernel(now=True)
    return nb


def text_of(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif out.get("output_type") == "error":
            parts.append(f"{out['ename']}: {out['evalue']}\n" + "\n".join(out["traceback"]))
        else:
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def source(cell: dict[str, Any]) -> str:
    text = cell["source"]
    return "".join(text) if isinstance(text, list) else text


def test_tutorial_notebook_end_to_end(server: Server, kernel_env: dict[str, str]) -> None:
    client = server.client()
    client.create_work_pool("my-pool", "process")
    path = server.root / "repo_info.ipynb"
    nb = run_notebook(path, kernel_env)

    flow_cell = next(c for c in nb.cells if c.source.startswith("%%flow get_repo_info"))
    assert "Stars 🌠 : 11600" in text_of(flow_cell)  # output shows as in a plain cell
    deploy_cell = next(c for c in nb.cells if c.source.startswith("get_repo_info.deploy("))
    assert "Code deployed: as you ran it (flow cell In [" in text_of(deploy_cell)
    assert "the same as the saved file" in text_of(deploy_cell)

    [interactive] = client.list_flow_runs(flow_name="get_repo_info")
    assert interactive["kind"] == "interactive" and interactive["state"]["type"] == "COMPLETED"
    lines = [x["message"] for x in client.read_logs(interactive["id"])["items"]]
    assert any("Stars 🌠 : 11600" in line for line in lines), lines
    [summary] = client.list_flow_runs(flow_name="summarize_repos")
    assert summary["state"]["type"] == "COMPLETED"

    deployment = client.read_deployment("get_repo_info/my-first-deployment")
    assert deployment["work_pool_name"] == "my-pool" and deployment["kind"] == "cell"
    frozen = client.read_deployment_notebook(deployment["id"])
    sources = [source(c) for c in frozen["cells"]]
    original = {
        c.source.splitlines()[0]: c.source
        for c in nbformat.read(path, as_version=4).cells
        if c.source
    }
    assert sources == [
        original['repo_name = "jupyter/notebook"'],
        original["import csv"],
        original['def load_repos(path="data/repos.csv"):'],
        original["%%flow get_repo_info --log-prints"],
    ]
    assert frozen["cells"][0]["metadata"]["tags"] == ["parameters"]

    run = client.create_flow_run_from_deployment(
        deployment["id"], parameters={"repo_name": "nteract/papermill"}
    )
    final = client.watch_flow_run(run["id"], timeout=120)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    lines = [x["message"] for x in client.read_logs(run["id"])["items"]]
    assert any("nteract/papermill repository statistics" in line for line in lines), lines
    assert any("Stars 🌠 : 5900" in line for line in lines), lines
    executed = client.read_flow_run_notebook(run["id"])
    assert any("Forks 🍴 : 430" in text_of(c) for c in executed["cells"])


def test_bad_input_in_cells_is_a_clear_message_and_creates_nothing(
    server: Server, kernel_env: dict[str, str]
) -> None:
    client = server.client()
    client.create_work_pool("my-pool", "process")
    path = server.root / "mistakes.ipynb"
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [
        new_code_cell("limit = 3", metadata={"tags": ["parameters"]}),
        new_code_cell("%load_ext nbflows"),
        new_code_cell("%%flow good\ntotal = limit * 2\nprint(total)"),
        new_code_cell('good.deploy(name="d", work_pool_name="no-such-pool")'),
        new_code_cell('good.deploy(name="d", work_pool_name="my-pool", parameters={"limitt": 1})'),
        new_code_cell(
            'good.deploy(name="d", work_pool_name="my-pool", parameters={"limit": "many"})'
        ),
        new_code_cell("%deploy missing_flow --name d --pool my-pool"),
        new_code_cell("%%flow broken\nif total ==\n    print('never')"),
        new_code_cell("broken"),
        new_code_cell("%%flow --retries -1"),
    ]
    nbformat.write(nb, path)
    executed = run_notebook(path, kernel_env, allow_errors=True)
    out = [text_of(c) for c in executed.cells]
    assert "6" in out[2]
    assert "no work pool named 'no-such-pool'" in out[3]
    assert "limitt" in out[4] and "limit" in out[4]
    assert "limit" in out[5] and "integer" in out[5]
    assert "missing_flow" in out[6]
    assert "SyntaxError" in out[7]
    assert "NameError" in out[8]  # a flow cell that does not compile binds nothing
    assert "UsageError" in out[9] or "retries" in out[9]
    for text in out[3:7]:  # what the user got wrong, not where nbflows noticed it
        assert "nbflows/client.py" not in text and "Traceback" not in text, text
    assert client.list_deployments() == []
    assert client.list_flow_runs(flow_name="broken") == []
    with pytest.raises(CellExecutionError):
        run_notebook(path, kernel_env)  # and the notebook does fail where a cell fails


class LabKernel:
    """A kernel for one notebook, sent cells as JupyterLab sends them: each execute request
    names its cell (`metadata.cellId`), and nothing is saved to the file."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env={**env, "JPY_SESSION_NAME": str(path)}, cwd=str(path.parent))
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, cell_id: str | None = None, timeout: float = 120) -> str:
        """Execute `code` (as cell `cell_id`); its output as text. Fails when the cell fails."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg(
            "execute_request", content, metadata={"cellId": cell_id} if cell_id else {}
        )
        self.kc.shell_channel.send(msg)
        parts: list[str] = []
        while True:
            out = self.kc.get_iopub_msg(timeout=timeout)
            if out["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            kind, data = out["msg_type"], out["content"]
            if kind == "stream":
                parts.append(data["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(str(data["data"].get("text/plain", "")))
            elif kind == "error":
                parts.append(f"{data['ename']}: {data['evalue']}")
            elif kind == "status" and data["execution_state"] == "idle":
                break
        text = "".join(parts)
        reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["content"]["status"] == "ok", text
        return text

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_deploying_from_the_notebook_deploys_the_code_the_kernel_ran(
    server: Server, kernel_env: dict[str, str]
) -> None:
    """Defect 6: a flow cell edited and run, but not saved, is what gets deployed, and the
    deploy says so (with and without the cell ids JupyterLab sends)."""
    client = server.client()
    client.create_work_pool("my-pool", "process")
    path = server.root / "repo_info.ipynb"
    saved = nbformat.read(path, as_version=4)
    saved_text = path.read_text()
    cells = {c.source.splitlines()[0]: c for c in saved.cells if c.cell_type == "code"}
    flow_cell = cells["%%flow get_repo_info --log-prints"]
    kernel = LabKernel(path, kernel_env)
    try:
        for cell in saved.cells[: saved.cells.index(flow_cell) + 1]:
            if cell.cell_type == "code":
                kernel.run(cell.source, cell.id)
        # The user edits the flow cell and runs it again; the file is not saved.
        edited = flow_cell.source.replace("Forks 🍴", "Forks, edited in the kernel 🍴")
        assert edited != flow_cell.source
        shown = kernel.run(edited, flow_cell.id)
        assert "Forks, edited in the kernel 🍴 : 4900" in shown
        said = kernel.run(
            'get_repo_info.deploy(name="as-run", work_pool_name="my-pool")', "deploy-cell"
        )
        assert path.read_text() == saved_text  # nothing saved the notebook meanwhile
        deployed = client.read_deployment("get_repo_info/as-run")
        frozen = client.read_deployment_notebook(deployed["id"])
        assert source(frozen["cells"][-1]) == edited
        # The deploy says which code it deployed and how the saved file differs.
        assert "Code deployed: as you ran it (flow cell In [" in said, said
        assert "the saved file differs (not saved since)" in said, said
        assert "Forks, edited in the kernel 🍴" in said, said
        run = client.create_flow_run_from_deployment(deployed["id"])
        final = client.watch_flow_run(run["id"], timeout=120)
        assert final["state"]["type"] == "COMPLETED", final["state"]
        lines = [x["message"] for x in client.read_logs(run["id"])["items"]]
        assert any("Forks, edited in the kernel 🍴" in line for line in lines), lines

        # A front end that names no cells (nbclient, plain kernels): the flow cell is still
        # the one the kernel ran, found by its flow's name; `%deploy` says the same.
        again = edited.replace("Stars 🌠", "Stars, edited again 🌠")
        kernel.run(again)
        said = kernel.run("%deploy get_repo_info --name as-run --pool my-pool")
        frozen = client.read_deployment_notebook(deployed["id"])
        assert source(frozen["cells"][-1]) == again
        assert (
            "Stars, edited again 🌠" in said and "the saved file differs (not saved since)" in said
        ), said
        assert "code: version 1 → changed" in said, said

        # A cell above the flow, edited and run (JupyterLab names it): deployed as run too.
        params = cells['repo_name = "jupyter/notebook"']
        kernel.run('repo_name = "nteract/papermill"', params.id)
        said = kernel.run(
            'get_repo_info.deploy(name="as-run", work_pool_name="my-pool")', "deploy-cell"
        )
        frozen = client.read_deployment_notebook(deployed["id"])
        assert source(frozen["cells"][0]) == 'repo_name = "nteract/papermill"'
        schema = client.read_deployment(deployed["id"])["parameter_schema"]
        assert schema["properties"]["repo_name"]["default"] == "nteract/papermill"
        assert 'repo_name = "nteract/papermill"' in said, said
        assert path.read_text() == saved_text

        # A cell saved above the flow but never run here: deployed as saved (nothing else is
        # known of it), and the deploy says this kernel did not run it.
        saved.cells.insert(saved.cells.index(flow_cell), new_code_cell("limit = 10"))
        nbformat.write(saved, path)
        said = kernel.run("%deploy get_repo_info --name as-run --pool my-pool")
        assert "Deployed as saved, though this kernel has not run that text" in said, said
        assert "  cell 'limit = 10'" in said, said
        frozen = client.read_deployment_notebook(deployed["id"])
        assert [source(c) for c in frozen["cells"]][-2:] == ["limit = 10", again]
    finally:
        kernel.close()
