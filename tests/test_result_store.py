"""The result store on a folder and on a real S3-compatible server on loopback (moto in server
mode, started here as a subprocess): the store itself, then a server keeping a run's notebook
and artifacts in the bucket with only references in its database."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbflows.errors import InvalidInput, NotFound
from nbflows.results import ResultStore

from .servers import DATA, free_port, start_server

BUCKET = "nbflows-results"
#: moto accepts any credentials; botocore needs some.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port, with the bucket `BUCKET` made."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=2)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start:\n{log.read_text()}")
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for name, value in S3_ENV.items():
                mp.setenv(name, value)
            import s3fs

            s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(BUCKET)
            yield endpoint
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return {**S3_ENV, "NBFLOWS_RESULT_STORE_OPTIONS": json.dumps({"endpoint_url": s3_endpoint})}


def s3_store(endpoint: str, prefix: str) -> ResultStore:
    return ResultStore(
        f"s3://{BUCKET}/{prefix}", {"endpoint_url": endpoint, "skip_instance_cache": True}
    )


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_the_store_keeps_reads_and_removes_files(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        request.getfixturevalue("s3_env")
        store = s3_store(request.getfixturevalue("s3_endpoint"), f"unit-{tmp_path.name}")
    else:
        store = ResultStore(str(tmp_path / "results"))

    kept = store.put("runs/r1/artifacts/a/b.txt", b"hello")
    store.put("runs/r1/notebook.ipynb", b"{}")
    store.put("runs/r2/notebook.ipynb", b"[]")

    assert (kept.size, kept.sha256[:8]) == (5, "2cf24dba")
    assert store.get("runs/r1/artifacts/a/b.txt") == b"hello"
    store.delete("runs/r1")
    assert not store.exists("runs/r1/notebook.ipynb")
    assert store.get("runs/r2/notebook.ipynb") == b"[]"
    with pytest.raises(NotFound, match="missing from the result store"):
        store.get("runs/r1/notebook.ipynb")
    with pytest.raises(InvalidInput, match="relative path"):
        store.put("runs/../../etc/passwd", b"")
    if where == "folder":
        assert not (tmp_path / "results" / "runs" / "r1").exists()  # no empty folders left


def test_an_unknown_store_url_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="nope://"):
        ResultStore("nope://bucket/x")


def test_a_server_keeps_notebooks_and_artifacts_in_the_bucket(
    s3_env: dict[str, str], s3_endpoint: str, tmp_path: Path
) -> None:
    prefix = f"server-{tmp_path.name}"
    env = {**s3_env, "NBFLOWS_RESULT_STORE_URL": f"s3://{BUCKET}/{prefix}"}
    server = start_server(tmp_path, env=env)
    try:
        shutil.copy(DATA / "artifacts.ipynb", server.root / "artifacts.ipynb")
        assert "result store: s3://" in server.log()
        with server.client() as api:
            api.create_work_pool("local", type="process")
            api.deploy(path="artifacts.ipynb", name="s3", work_pool_name="local")
            run = api.create_flow_run_from_deployment("artifacts/s3")
            final = api.watch_flow_run(run["id"], timeout=180)
            assert final["state"]["type"] == "COMPLETED", final
            notebook = api.read_flow_run_notebook(run["id"])
            artifacts = {a["name"]: a for a in api.list_flow_run_artifacts(run["id"])}
            figure = api.read_flow_run_artifact(run["id"], "plots/fig.bin")
            html = api.export_flow_run_notebook(run["id"], "html")

        store = s3_store(s3_endpoint, prefix)
        stored = sorted(
            p.removeprefix(f"{store.root}/") for p in store.fs.find(f"{store.root}/runs")
        )
        assert stored == [
            f"runs/{run['id']}/artifacts/plots/fig.bin",
            f"runs/{run['id']}/artifacts/report.csv",
            f"runs/{run['id']}/exports/notebook.html",
            f"runs/{run['id']}/notebook.ipynb",
        ]
        assert json.loads(store.get(f"runs/{run['id']}/notebook.ipynb")) == notebook
        assert figure == bytes(range(256)) * 40 and artifacts["plots/fig.bin"]["size"] == 10240
        assert b"report.csv" in html
        assert not (tmp_path / "results").exists()  # nothing went to the default folder

        pruned = server.cli("flow-run", "prune", "--keep-last", "1", "--dry-run")
        assert pruned.returncode == 0 and "Would remove 0 runs" in " ".join(pruned.stdout.split())
        with server.client() as api:
            second = api.create_flow_run_from_deployment("artifacts/s3")
            api.watch_flow_run(second["id"], timeout=180)
            answer: dict[str, Any] = api.prune_flow_runs(keep_last=1)
        assert [r["id"] for r in answer["runs"]] == [run["id"]]
        store.fs.invalidate_cache()
        assert not store.fs.exists(f"{store.root}/runs/{run['id']}")
        assert store.fs.exists(f"{store.root}/runs/{second['id']}/notebook.ipynb")
    finally:
        server.stop()
        with contextlib.suppress(FileNotFoundError):
            s3_store(s3_endpoint, prefix).delete("runs")
