"""The API keeps its contract: bad input is a 4xx naming the problem, never a 500, and every
answer matches the OpenAPI document (checked by schemathesis against a real server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from .pg_support import postgres_server
from .servers import Server, start_server

BIG = 2**63
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("contract"), embedded_worker=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeded(srv: Server) -> dict[str, Any]:
    """A pool, a deployment and a run of each kind, for the requests that need them."""
    assert srv.http("POST", "work_pools", json={"name": "p", "type": "process"}).status_code == 201
    d = srv.http(
        "POST", "deployments", json={"path": "trivial.ipynb", "name": "d", "work_pool_name": "p"}
    ).json()
    run = srv.http("POST", f"deployments/{d['id']}/runs", json={}).json()
    interactive = srv.http("POST", "flow_runs", json={"flow_name": "f"}).json()
    return {"deployment": d["id"], "run": run["id"], "interactive": interactive["id"]}


def raw(srv: Server, method: str, path: str, body: bytes | str) -> httpx.Response:
    """Send `body` as it is (not through a JSON encoder, which would refuse or repair it)."""
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return srv.http(method, path, content=content)


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert isinstance(body["message"], str) and isinstance(body["reason"], str), body
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return str(body["message"])


def deploy_body(**extra: Any) -> dict[str, Any]:
    return {"path": "trivial.ipynb", "name": "d", "work_pool_name": "p", **extra}


# ---- input that used to get a 500 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "notebook",
    [
        {"foo": 1},
        {"cells": "x"},
        {"cells": [1], "nbformat": 4, "nbformat_minor": 5, "metadata": {}},
    ],
)
def test_an_inline_notebook_that_is_not_a_notebook_is_422(
    srv: Server, seeded: dict[str, Any], notebook: dict[str, Any]
) -> None:
    refused(srv.http("POST", "deployments", json=deploy_body(notebook=notebook)), 422, "notebook")


def _big_int_requests(seeded: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    run = seeded["interactive"]
    return [
        (
            "POST",
            "work_pools",
            {"name": "big", "type": "process", "concurrency_limit": BIG},
            "concurrency_limit",
        ),
        ("PATCH", "work_pools/p", {"concurrency_limit": BIG}, "concurrency_limit"),
        ("POST", "work_pools/p/queues", {"name": "big", "priority": BIG}, "priority"),
        ("PATCH", "work_pools/p/queues/default", {"concurrency_limit": BIG}, "concurrency_limit"),
        ("POST", "work_pools/p/workers/heartbeat", {"name": "w", "limit": BIG}, "limit"),
        ("POST", "deployments", deploy_body(retries=BIG), "retries"),
        ("POST", "flow_runs", {"flow_name": "f", "max_retries": BIG}, "max_retries"),
        ("POST", f"flow_runs/{run}/logs", [{"message": "x", "level": BIG}], "level"),
        ("POST", f"flow_runs/{run}/logs", [{"message": "x", "cell_index": BIG}], "cell_index"),
    ]


def test_integers_beyond_64_bits_are_422_naming_the_field(
    srv: Server, seeded: dict[str, Any]
) -> None:
    for method, path, body, field in _big_int_requests(seeded):
        message = refused(srv.http(method, path, json=body), 422, field)
        assert "2147483647" in message, (method, path, message)
    # Free JSON values (parameters) keep any integer, as JSON does.
    run = srv.http("POST", "flow_runs", json={"flow_name": "f", "parameters": {"x": BIG * 4}})
    assert run.status_code == 201 and run.json()["parameters"] == {"x": BIG * 4}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("deployments/{d}/notebook?version=" + str(BIG), "version"),
        ("deployments/{d}/upcoming?limit=" + str(BIG), "limit"),
        ("flow_runs?offset=" + str(BIG), "offset"),
        ("flow_runs/{run}/logs?after=" + str(BIG), "after"),
    ],
)
def test_query_integers_beyond_64_bits_are_4xx(
    srv: Server, seeded: dict[str, Any], path: str, name: str
) -> None:
    url = path.format(d=seeded["deployment"], run=seeded["run"])
    response = srv.http("GET", url)
    assert 400 <= response.status_code < 500, response.text
    if response.status_code != 404:
        assert name in response.json()["message"]


def test_a_nul_byte_in_the_deploy_path_is_422(srv: Server, seeded: dict[str, Any]) -> None:
    refused(
        srv.http("POST", "deployments", json=deploy_body(path="tri\x00vial.ipynb")),
        422,
        "path",
        "NUL",
    )
    notebook = json.loads((srv.root / "trivial.ipynb").read_text())
    refused(
        srv.http("POST", "deployments", json=deploy_body(path="x\x00.ipynb", notebook=notebook)),
        422,
        "path",
    )


@pytest.mark.parametrize("depth", [120, 990, 5000])
def test_json_nested_too_deep_is_400(srv: Server, seeded: dict[str, Any], depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = '{"path": "trivial.ipynb", "name": "d", "work_pool_name": "p", "parameters": {"x": @}}'
    refused(raw(srv, "POST", "deployments", body.replace("@", nested)), 400, "nested", "deep")
    refused(
        raw(srv, "POST", "flow_runs", '{"flow_name": "f", "tags": @}'.replace("@", nested)),
        400,
        "deep",
    )


def test_a_lone_utf16_surrogate_is_refused_naming_the_field(
    srv: Server, seeded: dict[str, Any]
) -> None:
    lone = r'"\ud800"'
    refused(
        raw(srv, "POST", "flow_runs", '{"flow_name": @}'.replace("@", lone)),
        422,
        "flow_name",
        "surrogate",
    )
    refused(
        raw(
            srv,
            "POST",
            "deployments",
            '{"path": "trivial.ipynb", "name": "d", "work_pool_name": "p", "description": @}'.replace(
                "@", lone
            ),
        ),
        422,
        "description",
    )
    refused(
        raw(
            srv, "POST", "flow_runs", '{"flow_name": "f", "parameters": {@: 1}}'.replace("@", lone)
        ),
        422,
        "parameters",
    )


# ---- numbers JSON cannot hold -------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused_naming_the_field(
    srv: Server, seeded: dict[str, Any], number: str
) -> None:
    d, run = seeded["deployment"], seeded["run"]
    cases = [
        ("POST", "flow_runs", '{"flow_name": "f", "parameters": {"x": @}}', "parameters.x"),
        ("POST", "flow_runs", '{"flow_name": "f", "retry_delay": @}', "retry_delay"),
        (
            "POST",
            "deployments",
            '{"path": "trivial.ipynb", "name": "d", "work_pool_name": "p", "retry_delay": @}',
            "retry_delay",
        ),
        ("POST", f"deployments/{d}/runs", '{"parameters": {"a": [1, @]}}', "parameters.a.1"),
        (
            "POST",
            f"deployments/{d}/runs",
            '{"job_variables": {"timeout": @}}',
            "job_variables.timeout",
        ),
        ("PATCH", f"deployments/{d}", '{"parameters": {"y": @}}', "parameters.y"),
    ]
    for method, path, body, field in cases:
        message = refused(raw(srv, method, path, body.replace("@", number)), 422, field)
        assert "finite" in message, message
    # Nothing was stored: every answer that holds the run is still valid JSON.
    text = srv.http("GET", "flow_runs", params={"limit": 1000}).text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a response"))
    assert srv.http("GET", f"flow_runs/{run}").status_code == 200


def test_a_nan_stored_before_it_was_refused_is_answered_as_null(
    srv: Server, seeded: dict[str, Any]
) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(srv.db_url)
    with engine.begin() as db:
        db.execute(
            sqlalchemy.text("UPDATE flow_runs SET parameters = :p WHERE id = :id"),
            {"p": '{"x": NaN, "y": [Infinity]}', "id": seeded["interactive"]},
        )
    engine.dispose()
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in an answer")}
    run = json.loads(srv.http("GET", f"flow_runs/{seeded['interactive']}").text, **strict)
    assert run["parameters"] == {"x": None, "y": [None]}
    json.loads(srv.http("GET", "flow_runs", params={"limit": 1000}).text, **strict)


# ---- answers as the document declares them ------------------------------------------------------


def test_error_bodies_name_a_reason_also_for_401_and_405(srv: Server) -> None:
    for method in ("GET", "POST"):
        for headers in ({"Authorization": "token wrong"}, {}):
            response = httpx.request(method, srv.api + "work_pools", headers=headers, json={})
            assert response.status_code == 401, (method, headers, response.text)
            body = response.json()
            assert body["reason"] == "Unauthorized" and "token" in body["message"], body
            assert response.headers["WWW-Authenticate"] == "token"
    response = srv.http("PUT", "work_pools")
    assert response.status_code == 405
    assert response.json()["reason"] == "MethodNotAllowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}


def test_log_lines_with_unknown_fields_are_refused_like_other_bodies(
    srv: Server, seeded: dict[str, Any]
) -> None:
    path = f"flow_runs/{seeded['interactive']}/logs"
    refused(
        srv.http("POST", path, json=[{"message": "x", "colour": "red"}]),
        422,
        "colour",
        "unknown field",
    )
    refused(srv.http("POST", path, json={"message": "x", "lvl": 40}), 422, "lvl")


def test_an_empty_or_too_long_flow_name_is_refused(srv: Server) -> None:
    refused(srv.http("POST", "flow_runs", json={"flow_name": ""}), 422, "flow_name")
    # Its runs are named `<flow name>-<6 hex digits>`, in a 200-character column.
    refused(srv.http("POST", "flow_runs", json={"flow_name": "f" * 194}), 422, "flow_name")
    assert srv.http("POST", "flow_runs", json={"flow_name": "f" * 193}).status_code == 201


def test_the_document_describes_every_answer_with_a_model(srv: Server) -> None:
    doc = srv.http("GET", "openapi.json").json()
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    assert "$defs" not in text
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            answers = {k: v for k, v in op["responses"].items() if k.startswith("2")}
            assert answers, (method, path)
            for status, answer in answers.items():
                assert (status == "204") == ("content" not in answer), (method, path, status)
            for status in ("400", "401", "404", "422"):
                assert op["responses"][status]["content"], (method, path, status)
    deletes = [op for ops in doc["paths"].values() for m, op in ops.items() if m == "delete"]
    assert deletes and all(set(op["responses"]) & {"200", "204"} == {"204"} for op in deletes)


def test_long_lists_are_answered_whole_and_as_documented(srv: Server) -> None:
    from nbflows.services.schemas.flow_runs import FlowRunReply
    from nbflows.services.schemas.logs import LogsPageReply

    for i in range(130):  # longer than base.SAMPLE_LIMIT: checked by a sample, sent whole
        assert srv.http("POST", "flow_runs", json={"flow_name": f"many{i}"}).status_code == 201
    runs = srv.http("GET", "flow_runs", params={"limit": 1000}).json()
    assert {f"many{i}" for i in range(130)} <= {r["flow_name"] for r in runs}
    for run in runs:
        FlowRunReply.model_validate(run)
    lines = [{"message": f"line {i}"} for i in range(150)]
    assert srv.http("POST", f"flow_runs/{runs[0]['id']}/logs", json=lines).status_code == 201
    page = LogsPageReply.model_validate(srv.http("GET", f"flow_runs/{runs[0]['id']}/logs").json())
    assert [x.message for x in page.items] == [f"line {i}" for i in range(150)]


# ---- the document, checked by schemathesis against the server -----------------------------------

#: Examples per operation and seed of the CI run: bounded so that it takes about a minute.
FUZZ_EXAMPLES = int(os.environ.get("NBFLOWS_FUZZ_EXAMPLES", "10"))
FUZZ_SEED = int(os.environ.get("NBFLOWS_FUZZ_SEED", "1"))


def run_schemathesis(srv: Server, out: Path, examples: int, seed: int) -> dict[str, int]:
    """`st run --checks all` over the server's live document; the counts of its JUnit report."""
    junit = out / "schemathesis.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
    }
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(TESTS / "schemathesis.toml"),
        "run",
        srv.api + "openapi.json",
        "--header",
        f"Authorization: token {srv.token}",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=out, env=env, timeout=900)
    summary = done.stdout[done.stdout.find("SUMMARY") :]
    suite = ElementTree.parse(junit).getroot()
    counts = {
        key: sum(int(s.get(key, 0)) for s in suite.iter("testsuite"))
        for key in ("tests", "failures", "errors")
    }
    print(summary)
    assert done.returncode == 0, f"schemathesis exit {done.returncode}:\n{done.stdout[-20000:]}"
    return counts


@contextmanager
def store(kind: str) -> Iterator[str | None]:
    """The database URL of a server's store: SQLite by default, or a throwaway PostgreSQL."""
    if kind == "sqlite":
        yield None
        return
    with postgres_server() as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_schemathesis_finds_no_server_error_and_no_answer_unlike_the_document(
    tmp_path: Path, kind: str
) -> None:
    with store(kind) as url:
        server = start_server(tmp_path / "srv", embedded_worker=False, db_url=url)
        try:
            counts = run_schemathesis(server, tmp_path, FUZZ_EXAMPLES, FUZZ_SEED)
            assert counts["failures"] == 0 and counts["errors"] == 0, counts
            # A 500 as the access log says it ("] 500 POST /..."), not a message that quotes
            # a limit of 500 (e.g. "at most 500 items").
            assert not re.search(r"\] 500 [A-Z]+ /", server.log()), server.log()[-5000:]
            assert "Traceback" not in server.log()
            assert "every answer is checked against its declared model" in server.log()
            assert "does not match its declared model" not in server.log()
        finally:
            server.stop()
