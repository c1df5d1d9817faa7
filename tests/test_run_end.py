"""A worker's end of an attempt in one request (`POST flow_runs/{id}/end`): its last log lines,
its executed notebook and its end state in one transaction, refused whole unless the worker
holds the run, and stored once when sent twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .servers import Server, ok, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("run_end"), embedded_worker=False)
    try:
        server.http("POST", "work_pools", json={"name": "ends", "type": "process"})
        yield server
    finally:
        server.stop()


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "source": "print('hi')",
            "metadata": {},
            "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
        }
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def running_run(srv: Server, name: str, worker: str = "w") -> tuple[dict[str, Any], int]:
    """A run of a new deployment, claimed by `worker` and RUNNING; (run, fence)."""
    d = ok(
        srv.http(
            "POST",
            "deployments",
            json={"path": "trivial.ipynb", "name": name, "work_pool_name": "ends"},
        ),
        201,
    )
    run = ok(srv.http("POST", f"deployments/{d['id']}/runs", json={}), 201)
    [claimed] = ok(srv.http("POST", "work_pools/ends/claim", json={"worker": worker}))
    fence = claimed["fence"]
    state = {"type": "RUNNING", "worker": worker, "fence": fence}
    ok(srv.http("POST", f"flow_runs/{run['id']}/set_state", json=state))
    return run, fence


def lines(fence: int, *messages: str) -> list[dict[str, Any]]:
    return [
        {"message": m, "source": "worker", "fence": fence, "seq": i} for i, m in enumerate(messages)
    ]


def messages(srv: Server, run_id: str) -> list[str]:
    page = ok(srv.http("GET", f"flow_runs/{run_id}/logs"))
    return [x["message"] for x in page["items"]]


def test_logs_notebook_and_end_state_in_one_request_stored_once(srv: Server) -> None:
    run, fence = running_run(srv, "once")
    body = {
        "logs": lines(fence, "hi", "COMPLETED"),
        "notebook": NOTEBOOK,
        "state": {"type": "COMPLETED", "worker": "w", "fence": fence},
    }
    ended = ok(srv.http("POST", f"flow_runs/{run['id']}/end", json=body))
    assert ended["state"]["type"] == "COMPLETED" and ended["has_notebook"] is True
    assert ended["deployment_name"] == "trivial/once" and ended["work_pool_name"] == "ends"
    assert messages(srv, run["id"]) == ["hi", "COMPLETED"]
    stored = json.loads(srv.http("GET", f"flow_runs/{run['id']}/notebook").text)
    assert stored["cells"][0]["outputs"][0]["text"] == "hi\n"
    # Sent again (its answer was lost): answered as recorded, nothing stored twice.
    again = ok(srv.http("POST", f"flow_runs/{run['id']}/end", json=body))
    assert again["state"]["type"] == "COMPLETED"
    assert messages(srv, run["id"]) == ["hi", "COMPLETED"]


def test_a_refused_end_keeps_nothing(srv: Server) -> None:
    run, fence = running_run(srv, "refused")
    body = {
        "logs": lines(fence, "late line"),
        "notebook": NOTEBOOK,
        "state": {"type": "COMPLETED", "worker": "w", "fence": fence + 1},
    }
    refused = srv.http("POST", f"flow_runs/{run['id']}/end", json=body)
    assert refused.status_code == 409, refused.text
    assert "no longer holds" in refused.json()["message"]
    # A state change the run's state does not allow is refused before anything is kept too.
    ok(srv.http("POST", f"flow_runs/{run['id']}/cancel"))
    ok(srv.http("POST", f"flow_runs/{run['id']}/set_state", json={"type": "CANCELLED"}))
    body["state"] = {"type": "COMPLETED", "worker": "w", "fence": fence}
    refused = srv.http("POST", f"flow_runs/{run['id']}/end", json=body)
    assert refused.status_code == 409, refused.text
    after = ok(srv.http("GET", f"flow_runs/{run['id']}"))
    assert after["state"]["type"] == "CANCELLED" and after["has_notebook"] is False
    assert "late line" not in messages(srv, run["id"])


def test_bad_ends_are_4xx_naming_what_is_wrong(srv: Server) -> None:
    run, fence = running_run(srv, "bad")
    url = f"flow_runs/{run['id']}/end"
    no_worker = srv.http("POST", url, json={"state": {"type": "COMPLETED"}})
    assert no_worker.status_code == 422, no_worker.text
    assert "state.worker" in no_worker.json()["message"]
    assert "state.fence" in no_worker.json()["message"]
    state = {"type": "COMPLETED", "worker": "w", "fence": fence}
    not_a_notebook = srv.http("POST", url, json={"state": state, "notebook": {"x": 1}})
    assert not_a_notebook.status_code == 422 and "cells" in not_a_notebook.json()["message"]
    unknown = srv.http("POST", url, json={"state": {**state, "type": "DONE"}})
    assert unknown.status_code == 422, unknown.text
    assert ok(srv.http("GET", f"flow_runs/{run['id']}"))["state"]["type"] == "RUNNING"


def test_runs_by_deployment_name_follow_a_deployment_made_anew(srv: Server) -> None:
    """The client looks a deployment's id up once per name; when that deployment is deleted
    and deployed again under the same name, runs by name go to the new one."""
    client = srv.client()
    deploy = {"path": "trivial.ipynb", "name": "anew", "work_pool_name": "ends"}
    first = client.deploy(**deploy)
    a = client.create_flow_run_from_deployment("trivial/anew")
    b = client.create_flow_run_from_deployment("trivial/anew", parameters={"x": 2})
    assert a["deployment_id"] == b["deployment_id"] == first["id"]
    client.delete_deployment(first["id"])
    second = client.deploy(**deploy)
    assert second["id"] != first["id"]
    c = client.create_flow_run_from_deployment("trivial/anew")
    assert c["deployment_id"] == second["id"] and c["deployment_name"] == "trivial/anew"
