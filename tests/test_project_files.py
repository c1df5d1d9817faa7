"""Project files: a process-pool deployment carries the files beside its notebook, stored once
by content, and a standalone worker on a machine without the project folder runs the notebook
in a folder of its own where `data/x.csv` is where the notebook expects it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import Server, start_server

READER = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "read",
            "metadata": {},
            "outputs": [],
            "source": 'print(open("data/x.csv").read().strip())',
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, embedded_worker=False)
    project = srv.root / "proj"
    (project / "data").mkdir(parents=True)
    (project / "requirements.txt").write_text("")  # marks the project folder
    (project / "data" / "x.csv").write_text("a,b\n1,2\n")
    (project / "reader.ipynb").write_text(json.dumps(READER))
    (project / "notes").mkdir()
    (project / "notes" / "todo.md").write_text("a folder the notebook does not need")
    (project / "secret.db").write_text("never sent")
    (project / "data" / "x.csv.bak").write_text("kept")
    try:
        yield srv
    finally:
        srv.stop()


def stored_blobs(server: Server) -> set[str]:
    folder = server.root.parent / "results" / "blobs"
    return {p.name for p in folder.rglob("*") if p.is_file()}


def test_a_remote_process_worker_runs_the_notebook_beside_its_project_files(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as api:
        api.create_work_pool("remote", type="process")
        api.deploy(path="proj/reader.ipynb", name="csv", work_pool_name="remote")
        manifest = api.read_deployment_files("reader/csv")
        first = stored_blobs(server)
        # Deployed again unchanged: nothing new is stored; one file changed: one more file.
        api.deploy(path="proj/reader.ipynb", name="csv", work_pool_name="remote")
        assert stored_blobs(server) == first
        (server.root / "proj" / "data" / "x.csv").write_text("a,b\n3,4\n")
        api.deploy(path="proj/reader.ipynb", name="csv", work_pool_name="remote")
        assert len(stored_blobs(server) - first) == 1

    paths = [f["path"] for f in manifest["files"]]
    assert manifest["notebook_dir"] == "."
    assert {"data/x.csv", "reader.ipynb", "notes/todo.md"} <= set(paths)
    assert "secret.db" not in paths  # the image build context's rules: no databases
    # The worker's machine has no project folder: the server's copy goes away.
    shutil.move(server.root / "proj", tmp_path / "moved-away")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        **server.env,
        "NBFLOWS_API_URL": server.api,
        "NBFLOWS_API_TOKEN": server.token,
        "TMPDIR": str(tmp_path / "worker-tmp"),
    }
    (tmp_path / "worker-tmp").mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-m", "nbflows.cli.app", "worker", "start", "--pool", "remote"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with server.client() as api:
            run = api.create_flow_run_from_deployment("reader/csv")
            final = api.watch_flow_run(run["id"], timeout=180)
            lines = [x["message"] for x in api.read_logs(run["id"])["items"]]
    finally:
        worker.terminate()
        worker.wait(60)
    assert final["state"]["type"] == "COMPLETED", lines
    assert "a,b\n3,4" in "\n".join(lines)  # the version that ran: the last deployed
    said = [x for x in lines if "project files of version 3" in x]
    assert said and str(tmp_path / "worker-tmp") in said[0]
