"""The pure parts of the client and CLI: server discovery, `k=v` parsing, error mapping.

No server here: requests that need one are covered by the end-to-end tests against a real server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from nbflows.cli.app import app
from nbflows.cli.common import parse_json_object
from nbflows.cli.deploy import (
    absolute_path,
    build_image,
    build_schedules,
    split_entrypoint,
)
from nbflows.client.api_errors import APIError, NoServerError, error_from_response
from nbflows.client.discovery import discover_servers
from nbflows.client.rest import Client, get_client
from nbflows.errors import BadRequest, Conflict, InvalidInput, NBFlowsError, NotFound
from nbflows.notebooks.parameters import parse_key_values, parse_value

# ---- discovery ---------------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_info(directory: Path, name: str, age: float, **info: object) -> Path:
    path = directory / f"jpserver-{name}.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "runtime"
    directory.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    monkeypatch.delenv("NBFLOWS_API_URL", raising=False)
    monkeypatch.delenv("NBFLOWS_API_TOKEN", raising=False)
    return directory


def test_discovery_newest_live_server_first(runtime: Path) -> None:
    me = os.getpid()
    write_info(runtime, "old", 100, url="http://127.0.0.1:1111/", token="t-old", pid=me)
    write_info(runtime, "new", 10, url="http://127.0.0.1:2222/base/", token="t-new", pid=me)
    write_info(runtime, "dead", 0, url="http://127.0.0.1:3333/", token="t-dead", pid=dead_pid())
    write_info(runtime, "sock", 0, url="http+unix://x/", sock="/tmp/s.sock", pid=me)
    (runtime / "jpserver-half.json").write_text('{"url": "http://', encoding="utf-8")
    (runtime / "kernel-1.json").write_text("{}", encoding="utf-8")

    servers = discover_servers()
    assert [s["token"] for s in servers] == ["t-new", "t-old"]
    assert servers[0].api_url == "http://127.0.0.1:2222/base/nbflows/api/"

    with get_client() as client:
        assert client.api_url == "http://127.0.0.1:2222/base/nbflows/api/"
        assert client.token == "t-new"
        assert client.dashboard_url == "http://127.0.0.1:2222/base/nbflows/"


def test_discovery_missing_runtime_dir(tmp_path: Path) -> None:
    assert discover_servers(tmp_path / "nope") == []


def test_environment_wins_over_runtime_files(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_info(runtime, "a", 0, url="http://127.0.0.1:1111/", token="file", pid=os.getpid())
    monkeypatch.setenv("NBFLOWS_API_URL", "http://example.test:9/nbflows/api")
    monkeypatch.setenv("NBFLOWS_API_TOKEN", "env-token")
    with get_client() as client:
        assert client.api_url == "http://example.test:9/nbflows/api/"
        assert client.token == "env-token"
    # Arguments win over the environment.
    with get_client(url="http://other.test/nbflows/api/", token="arg") as client:
        assert (client.api_url, client.token) == ("http://other.test/nbflows/api/", "arg")


def test_no_server_found(runtime: Path) -> None:
    write_info(runtime, "dead", 0, url="http://127.0.0.1:3333/", token="x", pid=dead_pid())
    with pytest.raises(NoServerError) as info:
        get_client()
    assert isinstance(info.value, NBFlowsError)
    message = str(info.value)
    assert "jupyter lab" in message
    assert "nbflows server" in message
    assert "NBFLOWS_API_URL" in message


def test_connection_refused_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/nbflows/api/"
    with Client(url, timeout=5) as client, pytest.raises(NoServerError) as info:
        client.health()
    assert url in str(info.value)


def test_authorization_header_only_with_a_token() -> None:
    with Client("http://h/nbflows/api/", token="abc") as client:
        assert client._http.headers["Authorization"] == "token abc"
    with Client("http://h/nbflows/api/") as client:
        assert "Authorization" not in client._http.headers


# ---- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"5"', "5"),
        ("PrefectHQ/prefect", "PrefectHQ/prefect"),
        ("", ""),
        ("NaN", "NaN"),
        ("True", "True"),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_parse_key_values() -> None:
    assert parse_key_values(["repo_name=a/b", "n=3", "expr=x=y", "n=4"], "--param") == {
        "repo_name": "a/b",
        "n": 4,
        "expr": "x=y",
    }
    assert parse_key_values(None, "--param") == {}
    with pytest.raises(InvalidInput, match="--param expects KEY=VALUE, got 'oops'"):
        parse_key_values(["oops"], "--param")
    with pytest.raises(InvalidInput):
        parse_key_values(["=1"], "--job-variable")


def test_parse_json_object() -> None:
    assert parse_json_object('{"a": [1]}', "--params") == {"a": [1]}
    assert parse_json_object(None, "--params") == {}
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_json_object("[1]", "--params")
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_json_object("{", "--params")


# ---- deploy arguments ---------------------------------------------------------------------------


def test_split_entrypoint() -> None:
    assert split_entrypoint("notebooks/repo_info.ipynb:get_repo_info") == (
        "notebooks/repo_info.ipynb",
        "get_repo_info",
    )
    assert split_entrypoint("notebooks/repo_info.ipynb") == ("notebooks/repo_info.ipynb", None)
    assert split_entrypoint("C:\\work\\nb.ipynb") == ("C:\\work\\nb.ipynb", None)
    assert split_entrypoint("dir:x/nb.ipynb") == ("dir:x/nb.ipynb", None)


def test_absolute_path() -> None:
    assert absolute_path("nb/a.ipynb", cwd="/home/u/proj") == "/home/u/proj/nb/a.ipynb"
    assert absolute_path("../a.ipynb", cwd="/home/u/proj") == "/home/u/a.ipynb"
    assert absolute_path("/abs/a.ipynb", cwd="/home/u") == "/abs/a.ipynb"


def test_split_image() -> None:
    from nbflows.packaging.images import split_image_reference as split_image

    assert split_image("sales") == ("sales", None)
    assert split_image("sales:v1") == ("sales", "v1")
    assert split_image("localhost:5000/sales") == ("localhost:5000/sales", None)
    assert split_image("localhost:5000/sales:v1") == ("localhost:5000/sales", "v1")
    assert split_image("sales@sha256:abc") == ("sales@sha256:abc", None)


def test_build_schedules() -> None:
    assert build_schedules(None, None, None, None) is None
    assert build_schedules(["0 6 * * *"], None, None, "Europe/Paris") == [
        {"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Paris"}
    ]
    assert build_schedules(None, [3600.0, 1.5], None, None) == [
        {"kind": "interval", "interval": 3600},
        {"kind": "interval", "interval": 1.5},
    ]
    with pytest.raises(InvalidInput, match="one kind of schedule"):
        build_schedules(["0 6 * * *"], [60.0], None, None)
    with pytest.raises(InvalidInput, match="--timezone needs a schedule"):
        build_schedules(None, None, None, "UTC")
    with pytest.raises(InvalidInput, match="positive"):
        build_schedules(None, [0.0], None, None)


def test_build_image() -> None:
    assert build_image(None, None, None, None) is None
    assert build_image("sales:tutorial", "auto", "python:3.11-slim", False) == {
        "name": "sales",
        "tag": "tutorial",
        "dockerfile": "auto",
        "base_image": "python:3.11-slim",
        "push": False,
    }
    with pytest.raises(InvalidInput, match="only apply with --image"):
        build_image(None, "Dockerfile", None, None)


# ---- error mapping ------------------------------------------------------------------------------


def response(status: int, body: object = None, text: str | None = None) -> httpx.Response:
    request = httpx.Request("GET", "http://h/nbflows/api/work_pools/x?secret=1")
    if text is not None:
        return httpx.Response(status, text=text, request=request)
    return httpx.Response(status, json=body, request=request)


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (400, "BadRequest", BadRequest),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (422, "InvalidInput", InvalidInput),
    ],
)
def test_domain_errors_come_back_as_their_class(
    status: int, reason: str, cls: type[NBFlowsError]
) -> None:
    body = {"message": "work pool 'x' is wrong", "reason": reason, "details": {"field": "name"}}
    exc = error_from_response(response(status, body))
    assert type(exc) is cls
    assert exc.message == "work pool 'x' is wrong"
    assert exc.details == {"field": "name"}


def test_other_errors_are_api_errors() -> None:
    exc = error_from_response(response(500, text="<html>boom</html>"))
    assert isinstance(exc, APIError)
    assert exc.status_code == 500
    assert "HTTP 500" in exc.message and "boom" in exc.message
    assert "secret" not in exc.message  # the query string is left out

    forbidden = error_from_response(response(403, {"message": "Forbidden", "reason": None}))
    assert isinstance(forbidden, APIError)
    assert "token" in forbidden.message

    missing = error_from_response(response(404, text="Not Found"))
    assert isinstance(missing, APIError)  # a missing route, not a missing object
    assert "nbflows extension" in missing.message

    unknown_reason = error_from_response(response(409, {"message": "m", "reason": "Other"}))
    assert isinstance(unknown_reason, APIError)


# ---- CLI error handling -------------------------------------------------------------------------


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/nbflows/api/"


def test_cli_error_is_one_red_line_and_exit_1() -> None:
    url = closed_url()
    result = CliRunner().invoke(app, ["--url", url, "work-pool", "ls"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: Cannot connect to the nbflows server at " + url)


def test_cli_validates_before_calling_the_server() -> None:
    result = CliRunner().invoke(
        app,
        [
            "--url",
            closed_url(),
            "deploy",
            "nb.ipynb",
            "--name",
            "d",
            "--pool",
            "p",
            "--cron",
            "0 6 * * *",
            "--interval",
            "60",
        ],
    )
    assert result.exit_code == 1
    assert "give one kind of schedule, not --cron and --interval" in result.stderr


def test_cli_help_needs_no_server() -> None:
    result = CliRunner().invoke(app, ["--url", closed_url(), "deployment", "run", "--help"])
    assert result.exit_code == 0
    assert "--watch" in result.output


def test_parse_key_values_keeps_text_for_string_parameters() -> None:
    schema = {
        "properties": {
            "zip": {"type": "string"},
            "maybe": {"type": ["string", "null"]},
            "n": {"type": "integer"},
            "x": {"type": ["number", "string"]},
        }
    }
    items = ["zip=01234", "maybe=null", "n=7", "x=2.5", "other=true", 'zip2="5"']
    assert parse_key_values(["zip=5", *items[1:]], "--param", schema) == {
        "zip": "5",
        "maybe": None,
        "n": 7,
        "x": 2.5,
        "other": True,
        "zip2": "5",
    }
    assert parse_key_values(["zip=[1]"], "--param", schema) == {"zip": "[1]"}


def test_interval_text() -> None:
    from nbflows.cli.output import schedule_text

    texts = [
        schedule_text({"kind": "interval", "interval": v}) for v in (3600, 90, 86400 + 60, 0.5, 45)
    ]
    assert texts == [
        "every 1h",
        "every 1m30s",
        "every 1d1m",
        "every 0.5s",
        "every 45s",
    ]


def test_api_root() -> None:
    from nbflows.client.discovery import api_root

    assert api_root("http://h:8888/") == "http://h:8888/nbflows/api/"
    assert api_root("http://h:8888") == "http://h:8888/nbflows/api/"
    assert api_root("http://h/base/") == "http://h/base/nbflows/api/"
    assert api_root("http://h/base/nbflows/api") == "http://h/base/nbflows/api/"
    assert api_root("http://h/nbflows/api/") == "http://h/nbflows/api/"


def test_url_without_token_borrows_the_running_servers_token(runtime: Path) -> None:
    write_info(runtime, "a", 0, url="http://localhost:4321/", token="tok", pid=os.getpid())
    with get_client(url="http://127.0.0.1:4321/nbflows/api/") as client:
        assert client.token == "tok"
    with get_client(url="http://127.0.0.1:4322/nbflows/api/") as client:
        assert client.token is None


def test_discovered_server_uses_its_own_token(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_info(runtime, "a", 0, url="http://localhost:4321/", token="own", pid=os.getpid())
    monkeypatch.setenv("NBFLOWS_API_TOKEN", "meant-for-another-server")
    with get_client() as client:
        assert client.token == "own"
    result = CliRunner().invoke(app, ["--url", closed_url(), "--token", "x", "work-pool", "ls"])
    assert result.exit_code == 1
