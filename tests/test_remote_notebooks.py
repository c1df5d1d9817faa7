"""Deploying a notebook from a URL (papermill's I/O handlers): `s3://` against a real
S3-compatible server on loopback (moto in server mode, as in test_result_store), and `file://`.
The server reads the notebook once, at deploy; the run executes the frozen copy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import DATA, Server, start_server
from .test_result_store import BUCKET, S3_ENV, s3_endpoint  # noqa: F401  (the moto fixture)
from .test_run_outputs import run_to_end

pytestmark = pytest.mark.slow


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    endpoint = request.getfixturevalue("s3_endpoint")
    # papermill's S3 handler uses boto3, which takes the endpoint from these variables.
    env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": endpoint, "BOTO3_ENDPOINT_URL": endpoint}
    srv = start_server(tmp_path, env=env)
    try:
        done = srv.cli("work-pool", "create", "local", "--type", "process")
        assert done.returncode == 0, done.stderr
        yield srv
    finally:
        srv.stop()


def test_a_notebook_deployed_from_an_s3_url_runs(
    request: pytest.FixtureRequest, server: Server
) -> None:
    import s3fs

    endpoint = request.getfixturevalue("s3_endpoint")
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, **_keys())
    url = f"s3://{BUCKET}/notebooks/{server.root.parent.name}/artifacts.ipynb"
    fs.pipe(url, (DATA / "artifacts.ipynb").read_bytes())

    done = server.cli("deploy", url, "--pool", "local", "--name", "from-s3")

    assert done.returncode == 0, done.stdout + done.stderr
    with server.client() as api:
        deployment = api.read_deployment("artifacts/from-s3")
    assert deployment["entrypoint"] == url
    run = run_to_end(server, "artifacts/from-s3", rows=2)
    with server.client() as api:
        names = [a["name"] for a in api.list_flow_run_artifacts(run["id"])]
    assert names == ["plots/fig.bin", "report.csv"]
    # Read once, at deploy: the run used the frozen copy, so a changed object changes nothing.
    fs.rm(url)
    again = run_to_end(server, "artifacts/from-s3", rows=1)
    assert again["state"]["type"] == "COMPLETED"
    missing = server.cli(
        "deploy", f"s3://{BUCKET}/nope/missing.ipynb", "--pool", "local", "--name", "gone"
    )
    assert missing.returncode != 0 and "not found" in (missing.stdout + missing.stderr).lower()


def test_a_notebook_deployed_from_a_file_url_runs(server: Server) -> None:
    (server.root / "artifacts.ipynb").write_bytes((DATA / "artifacts.ipynb").read_bytes())
    url = (server.root / "artifacts.ipynb").as_uri()

    done = server.cli("deploy", url, "--pool", "local", "--name", "from-file")

    assert done.returncode == 0, done.stdout + done.stderr
    run = run_to_end(server, "artifacts/from-file", rows=2)
    with server.client() as api:
        notebook = api.read_flow_run_notebook(run["id"])
    assert "report.csv" in json.dumps(notebook)


def test_urls_a_notebook_cannot_come_from_are_clear_422(server: Server, tmp_path: Path) -> None:
    outside = tmp_path / "outside.ipynb"
    outside.write_bytes((DATA / "artifacts.ipynb").read_bytes())
    for url, says in [
        (outside.as_uri(), "outside the server's root directory"),
        ("https://example.org/nb.ipynb", "file://, s3://"),
        (f"s3://{BUCKET}/notes.txt", "not a notebook"),
    ]:
        body = {"path": url, "name": "bad", "work_pool_name": "local"}
        answer = server.http("POST", "deployments", json=body)
        assert answer.status_code == 422, (url, answer.text)
        assert says in answer.json()["message"], (url, answer.json())


def _keys() -> dict[str, str]:
    return {"key": S3_ENV["AWS_ACCESS_KEY_ID"], "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"]}
