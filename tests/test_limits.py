"""Size limits: a server with small limits refuses or cuts what is over them, and says which limit
(and its setting) it hit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .servers import Server, start_server

KiB = 1024
LIMITS = {
    "max_body_size": 256 * KiB,
    "max_parameters_size": 8 * KiB,
    "max_notebook_size": 64 * KiB,
    "max_log_line": 1000,
    "max_run_output": 20_000,
    "max_artifact_size": 100 * KiB,
    "max_run_artifacts": 200 * KiB,
    "max_project_size": 16 * 1024 * KiB,
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("limits"),
        embedded_worker=False,
        extra_args=[f"--NBFlowsExtension.{name}={value}" for name, value in LIMITS.items()],
    )
    try:
        assert server.http("POST", "work_pools", json={"name": "p", "type": "process"}).is_success
        yield server
    finally:
        server.stop()


def over(response: httpx.Response, setting: str) -> str:
    """The response is a 413 naming the limit's value and its setting."""
    assert response.status_code == 413, (response.status_code, response.text[:300])
    body = response.json()
    assert body["reason"] == "TooLarge"
    assert f"NBFlowsExtension.{setting}" in body["message"], body["message"]
    assert str(LIMITS[setting]) in body["message"], body["message"]
    return str(body["message"])


def deploy_body(**extra: Any) -> dict[str, Any]:
    return {"path": "trivial.ipynb", "name": "d", "work_pool_name": "p", **extra}


def interactive_run(srv: Server) -> str:
    response = srv.http("POST", "flow_runs", json={"flow_name": "limits"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_the_health_answer_tells_the_limits(srv: Server) -> None:
    assert srv.http("GET", "health").json()["limits"] == LIMITS


def test_a_body_over_max_body_size_is_413_also_when_sent_in_chunks(srv: Server) -> None:
    big = {"flow_name": "f", "description": "x" * (300 * KiB)}
    over(srv.http("POST", "flow_runs", json=big), "max_body_size")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is known only as it comes
        text = json.dumps(big).encode()
        for start in range(0, len(text), 16 * KiB):
            yield text[start : start + 16 * KiB]

    over(srv.http("POST", "flow_runs", content=chunks()), "max_body_size")
    # Just under the limit is taken.
    assert (
        srv.http(
            "POST", "flow_runs", json={"flow_name": "f", "description": "x" * 200 * KiB}
        ).status_code
        == 201
    )


def test_parameters_over_max_parameters_size_are_413_and_nothing_is_stored(srv: Server) -> None:
    params = {"blob": "x" * (10 * KiB)}
    before = len(srv.http("GET", "flow_runs", params={"limit": 1000}).json())
    over(
        srv.http("POST", "flow_runs", json={"flow_name": "f", "parameters": params}),
        "max_parameters_size",
    )
    d = srv.http("POST", "deployments", json=deploy_body(name="params"))
    assert d.status_code == 201, d.text
    over(
        srv.http("POST", f"deployments/{d.json()['id']}/runs", json={"parameters": params}),
        "max_parameters_size",
    )
    over(
        srv.http("PATCH", f"deployments/{d.json()['id']}", json={"parameters": params}),
        "max_parameters_size",
    )
    over(
        srv.http("POST", "deployments", json=deploy_body(parameters=params)), "max_parameters_size"
    )
    assert len(srv.http("GET", "flow_runs", params={"limit": 1000}).json()) == before


def _notebook_with_source(size: int) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": "a",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": "# " + "x" * size,
            },
        ],
    }


def test_a_notebook_over_max_notebook_size_is_refused_at_deploy(srv: Server) -> None:
    big = _notebook_with_source(70 * KiB)
    over(
        srv.http("POST", "deployments", json=deploy_body(name="nb", notebook=big)),
        "max_notebook_size",
    )
    (srv.root / "big.ipynb").write_text(json.dumps(big))
    over(
        srv.http("POST", "deployments", json=deploy_body(name="nb", path="big.ipynb")),
        "max_notebook_size",
    )
    small = _notebook_with_source(1 * KiB)
    assert (
        srv.http("POST", "deployments", json=deploy_body(name="nb", notebook=small)).status_code
        == 201
    )


def test_a_long_log_line_is_cut_and_the_cut_is_said(srv: Server) -> None:
    run = interactive_run(srv)
    answer = srv.http(
        "POST", f"flow_runs/{run}/logs", json=[{"message": "y" * 5000}, {"message": "next"}]
    )
    assert answer.status_code == 201 and answer.json() == {"accepted": 2, "truncated": False}
    first, second = srv.http("GET", f"flow_runs/{run}/logs").json()["items"]
    assert first["message"].startswith("y" * 1000)
    assert "y" * 1001 not in first["message"]
    assert (
        "4000 more characters" in first["message"]
        and "NBFlowsExtension.max_log_line" in first["message"]
    )
    assert second["message"] == "next"


def test_output_over_max_run_output_is_dropped_after_a_line_saying_so(srv: Server) -> None:
    run = interactive_run(srv)
    lines = [{"message": f"{i:04d}" + "z" * 996} for i in range(30)]  # 30,000 characters
    answer = srv.http("POST", f"flow_runs/{run}/logs", json=lines).json()
    assert answer == {"accepted": 20, "truncated": True}
    items = srv.http("GET", f"flow_runs/{run}/logs").json()["items"]
    assert [x["message"][:4] for x in items[:-1]] == [f"{i:04d}" for i in range(20)]
    assert "NBFlowsExtension.max_run_output" in items[-1]["message"]
    assert "20000" in items[-1]["message"]
    # Later lines are not kept, and the run says its log was cut.
    assert srv.http("POST", f"flow_runs/{run}/logs", json=[{"message": "late"}]).json() == {
        "accepted": 0,
        "truncated": True,
    }
    assert srv.http("GET", f"flow_runs/{run}").json()["logs_truncated"] is True


def _output(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def test_an_executed_notebook_over_max_notebook_size_keeps_a_note_where_output_was_cut(
    srv: Server,
) -> None:
    run = interactive_run(srv)
    nb = _notebook_with_source(10)
    nb["cells"][0]["outputs"] = [
        _output("small one\n"),
        _output("B" * 80 * KiB),
        _output("small two\n"),
    ]
    nb["cells"].append({**nb["cells"][0], "id": "b", "outputs": [_output("C" * 30 * KiB)]})
    assert srv.http("PUT", f"flow_runs/{run}/notebook", json=nb).status_code == 204
    stored = srv.http("GET", f"flow_runs/{run}/notebook")
    assert len(stored.content) <= LIMITS["max_notebook_size"]
    first, second = (cell["outputs"] for cell in stored.json()["cells"])
    assert first[0]["text"] == "small one\n" and first[2]["text"] == "small two\n"
    assert first[1]["name"] == "stderr" and "was cut here" in first[1]["text"]
    assert "NBFlowsExtension.max_notebook_size" in first[1]["text"]
    assert second[0]["text"] == "C" * 30 * KiB  # the smaller output fits once the larger is out
    # A notebook too large even without its outputs is refused.
    huge = _notebook_with_source(100 * KiB)
    over(srv.http("PUT", f"flow_runs/{run}/notebook", json=huge), "max_notebook_size")
