"""What runs keep, against a real server and its embedded process worker: artifacts (files a
run writes under NBFLOWS_OUTPUT_DIR), HTML exports, the result store folder, and retention
(`nbflows flow-run prune`, per-deployment policies applied by the scheduler)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from nbflows.results import ResultStore
from nbflows.store import tables as t
from nbflows.store.db import Database

from .servers import DATA, Server, ok, start_server
from .waiting import wait_for

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FIG = bytes(range(256)) * 40


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path,
        extra_args=[
            "--NBFlowsExtension.max_artifact_size=20000",
            "--NBFlowsExtension.retention_interval=1",
        ],
    )
    shutil.copy(DATA / "artifacts.ipynb", srv.root / "artifacts.ipynb")
    try:
        yield srv
    finally:
        srv.stop()


def run_to_end(server: Server, ref: str, **parameters: Any) -> dict[str, Any]:
    with server.client() as api:
        run = api.create_flow_run_from_deployment(ref, parameters=parameters or None)
        final = api.watch_flow_run(run["id"], timeout=180)
        lines = [x["message"] for x in api.read_logs(run["id"])["items"]]
    assert final["state"]["type"] == "COMPLETED", (final["state"], lines)
    return final


def deploy(server: Server, *args: str) -> None:
    done = server.cli("work-pool", "create", "local", "--type", "process")
    assert done.returncode == 0 or "already exists" in done.stderr, done.stderr
    done = server.cli("deploy", "artifacts.ipynb", "--pool", "local", *args)
    assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def database(url: str, migrate: bool = False) -> Iterator[Database]:
    db = Database(url, migrate=migrate)
    try:
        yield db
    finally:
        db.dispose()


def results_folder(server: Server) -> Path:
    return server.root.parent / "results"


def test_artifacts_are_listed_and_downloaded_with_the_cli(server: Server, tmp_path: Path) -> None:
    deploy(server, "--name", "files")
    run = run_to_end(server, "artifacts/files", rows=4)

    listed = server.cli("flow-run", "artifacts", run["id"])
    downloaded = server.cli(
        "flow-run", "artifact", run["id"], "plots/fig.bin", "-o", str(tmp_path / "fig.bin")
    )
    as_json = server.cli("flow-run", "artifacts", run["id"], "-o", "json")

    print(f"$ nbflows flow-run artifacts {run['id']}\n{listed.stdout}")
    print(f"$ nbflows flow-run artifact {run['id']} plots/fig.bin -o fig.bin\n{downloaded.stdout}")
    assert listed.returncode == 0, listed.stderr
    assert "report.csv" in listed.stdout and "plots/fig.bin" in listed.stdout
    assert "10 KiB" in listed.stdout  # fig.bin: 10,240 bytes
    assert downloaded.returncode == 0, downloaded.stderr
    assert (tmp_path / "fig.bin").read_bytes() == FIG
    files = {f["name"]: f for f in json.loads(as_json.stdout)}
    assert files["plots/fig.bin"]["sha256"] == hashlib.sha256(FIG).hexdigest()
    with server.client() as api:
        flow_run = api.read_flow_run(run["id"])
        assert [a["name"] for a in flow_run.artifacts] == ["plots/fig.bin", "report.csv"]
        assert flow_run.read_artifact("report.csv").decode() == "n,square\n0,0\n1,1\n2,4\n3,9\n"
    # Kept in the server's result-store folder, not in the database.
    kept = results_folder(server) / "runs" / run["id"]
    assert (kept / "artifacts" / "plots" / "fig.bin").read_bytes() == FIG
    assert json.loads((kept / "notebook.ipynb").read_text())["cells"]
    with database(server.db_url) as db, db.session() as s:
        assert s.scalars(select(t.FlowRunNotebook)).all() == []
    # The dashboard's run page links to each artifact and to the HTML export.
    page = server.http("GET", f"../runs/{run['id']}")
    assert page.status_code == 200
    assert f"flow_runs/{run['id']}/artifacts/plots%2Ffig.bin" in page.text
    assert f"flow_runs/{run['id']}/exports/html" in page.text


def test_an_artifact_over_the_size_limit_is_not_kept_and_the_log_says_so(server: Server) -> None:
    deploy(server, "--name", "big")
    run = run_to_end(server, "artifacts/big", big=30000)

    with server.client() as api:
        names = [a["name"] for a in api.list_flow_run_artifacts(run["id"])]
        lines = [x["message"] for x in api.read_logs(run["id"])["items"]]
    assert names == ["plots/fig.bin", "report.csv"]
    said = [x for x in lines if "big.bin" in x and "not kept" in x]
    assert said and "max_artifact_size" in said[0], lines


def test_bad_artifact_requests_are_clear_4xx(server: Server) -> None:
    deploy(server, "--name", "bad")
    run = run_to_end(server, "artifacts/bad")
    base = f"flow_runs/{run['id']}/artifacts"
    assert server.http("PUT", f"{base}/..%2Fescape", content=b"x").status_code == 422
    assert server.http("GET", f"{base}/missing.txt").status_code == 404
    assert server.http("GET", "flow_runs/nope/artifacts").status_code == 404
    over = server.http("PUT", f"{base}/huge.bin", content=b"x" * 20001)
    assert over.status_code == 413 and "max_artifact_size" in over.json()["message"]
    written = ok(server.http("PUT", f"{base}/note.txt", content=b"by hand"), 201)
    assert written["size"] == 7
    got = server.http("GET", f"{base}/note.txt")
    assert got.content == b"by hand"
    assert "attachment" in got.headers["content-disposition"]


def test_the_executed_notebook_exports_to_html_from_the_cli(server: Server, tmp_path: Path) -> None:
    deploy(server, "--name", "html")
    run = run_to_end(server, "artifacts/html", rows=2)

    done = server.cli(
        "flow-run", "notebook", run["id"], "--to", "html", "-o", str(tmp_path / "run.html")
    )

    assert done.returncode == 0, done.stderr
    html = (tmp_path / "run.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "wrote" in html and "report.csv" in html
    unknown = server.http("GET", f"flow_runs/{run['id']}/exports/docx")
    assert unknown.status_code == 422 and "html" in unknown.json()["message"]


def test_a_deployment_with_export_html_keeps_one_for_every_run(server: Server) -> None:
    deploy(server, "--name", "exported", "--export", "html")
    run = run_to_end(server, "artifacts/exported")
    export = results_folder(server) / "runs" / run["id"] / "exports" / "notebook.html"
    assert "report.csv" in export.read_text()


def sizes_line(stdout: str) -> str:
    found = re.search(r"(Would remove|Removed) \d+ runs?,.*", " ".join(stdout.split()))
    assert found, stdout
    return found.group(0)


def test_prune_removes_old_runs_with_their_files_and_prints_sizes(server: Server) -> None:
    deploy(server, "--name", "many")
    runs = [run_to_end(server, "artifacts/many", rows=n)["id"] for n in (1, 2, 3)]
    folders = [results_folder(server) / "runs" / r for r in runs]
    assert all(f.is_dir() for f in folders)

    dry = server.cli("flow-run", "prune", "--keep-last", "1", "--dry-run")
    real = server.cli("flow-run", "prune", "--keep-last", "1")
    nothing = server.cli("flow-run", "prune", "--older-than", "30d")

    print(f"$ nbflows flow-run prune --keep-last 1 --dry-run\n{dry.stdout}")
    print(f"$ nbflows flow-run prune --keep-last 1\n{real.stdout}")
    print(f"$ nbflows flow-run prune --older-than 30d\n{nothing.stdout}")
    assert dry.returncode == 0 and real.returncode == 0, dry.stderr + real.stderr
    assert sizes_line(dry.stdout).startswith("Would remove 2 runs")
    assert re.search(r"Stored before: 3 runs, [\d.]+ KiB; would be after: 1 run,", dry.stdout)
    assert sizes_line(real.stdout).startswith("Removed 2 runs")
    assert runs[0] in real.stdout and runs[1] in real.stdout and runs[2] not in real.stdout
    assert "Stored before: 3 runs" in sizes_line(real.stdout)
    assert "after: 1 run," in sizes_line(real.stdout)
    assert sizes_line(nothing.stdout).startswith("Removed 0 runs")
    assert [f.is_dir() for f in folders] == [False, False, True]
    with server.client() as api:
        assert [r["id"] for r in api.list_flow_runs()] == [runs[2]]
    with database(server.db_url) as db, db.session() as s:
        kept = set(s.scalars(select(t.LogLine.flow_run_id)))
        files = set(s.scalars(select(t.RunFile.flow_run_id)))
    assert kept == files == {runs[2]}
    bad = server.cli("flow-run", "prune", "--older-than", "soon")
    assert bad.returncode == 1 and "30d" in bad.stderr
    neither = server.cli("flow-run", "prune")
    assert neither.returncode == 1 and "--keep-last" in neither.stderr


def test_the_scheduler_applies_a_deployments_keep_last(server: Server) -> None:
    deploy(server, "--name", "kept", "--keep-last", "2")
    runs = [run_to_end(server, "artifacts/kept")["id"] for _ in range(3)]

    with server.client() as api:

        def pruned() -> list[str] | None:
            left = [r["id"] for r in api.list_flow_runs()]
            return left if len(left) == 2 else None

        left = wait_for(pruned, "the retention pass to remove the oldest run", timeout=60)
        assert api.read_deployment("artifacts/kept")["retention_keep_last"] == 2
    assert sorted(left) == sorted(runs[1:])
    assert not (results_folder(server) / "runs" / runs[0]).exists()


def test_a_notebook_stored_in_the_database_before_the_result_store_is_still_read(
    tmp_path: Path,
) -> None:
    from nbflows.services import flow_runs
    from nbflows.services.schemas.bodies import InteractiveRunCreate

    results = ResultStore(str(tmp_path / "results"))
    with database(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=True) as db:
        with db.session() as s:
            run = flow_runs.create_interactive_run(s, InteractiveRunCreate(flow_name="old"))
            s.add(t.FlowRunNotebook(flow_run_id=run.id, notebook='{"cells": ["legacy"]}'))
            run.has_notebook = True
            run_id = run.id
        with db.session() as s:
            assert json.loads(flow_runs.read_notebook(s, run_id, results))["cells"] == ["legacy"]
            flow_runs.store_notebook(s, run_id, '{"cells": []}', results=results)
        with db.session() as s:
            assert flow_runs.read_notebook(s, run_id, results) == '{"cells": []}'
            assert s.get(t.FlowRunNotebook, run_id) is None  # the old copy is gone
    assert (tmp_path / "results" / "runs" / run_id / "notebook.ipynb").exists()
