"""One serialiser per resource, and it is the route's response schema: what the API answers for
pools, queues, workers, deployments, flow runs, log lines and artifacts is built by the reply
model that `extension/api.py` declares for the route, field for field and in its order; and the
pages' scripts take the terminal states from the server (`nbflows.protocol`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from nbflows.protocol import TERMINAL_VALUES, StateType
from nbflows.services.schemas.deployments import DeploymentReply, ScheduleReply
from nbflows.services.schemas.flow_runs import FlowRunReply, StateReply
from nbflows.services.schemas.logs import LogLineReply, LogsPageReply
from nbflows.services.schemas.pools import WorkerReply, WorkPoolReply, WorkQueueReply
from nbflows.services.schemas.reply import Reply
from nbflows.services.schemas.run_files import RunFileReply

from .conftest import Server
from .waiting import wait_for

ARTIFACT = """\
import os, pathlib
pathlib.Path(os.environ["NBFLOWS_OUTPUT_DIR"], "report.txt").write_text("made by the run")
print("artifact written")
"""


def get(server: Server, path: str) -> Any:
    """The answer's JSON, with its objects' keys in the order the server sent them."""
    response = httpx.get(
        server.url + "nbflows/api/" + path,
        headers={"Authorization": f"token {server.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return json.loads(response.content)


def assert_built_by(model: type[BaseModel], body: dict[str, Any]) -> None:
    """`body` is `model`'s: its declared fields, in their order, and valid."""
    assert list(body) == list(model.model_fields), model.__name__
    model.model_validate(body)


@pytest.fixture
def resources(server: Server, tmp_path) -> dict[str, Any]:
    """A pool with a second queue, a deployment, and a completed run that wrote an artifact."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.cells.append(nbformat.v4.new_code_cell(ARTIFACT))
    path = server.root / "artifact.ipynb"
    nbformat.write(notebook, path)
    client = server.client()
    client.create_work_pool("replies-pool", "process")
    client.create_work_queue("replies-pool", "urgent", priority=1)
    deployment = client.deploy(
        path=str(path),
        name="nightly",
        work_pool_name="replies-pool",
        schedules=[{"kind": "interval", "interval": 3600}],
    )
    run = client.create_flow_run_from_deployment(deployment["id"])
    final = client.watch_flow_run(run["id"], timeout=180)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    wait_for(lambda: client.read_work_pool("replies-pool")["workers_online"], "the worker")
    client.close()
    return {"deployment": deployment, "run": final}


def test_each_resource_is_answered_as_its_reply_model_builds_it(server, resources):
    pool = get(server, "work_pools/replies-pool")
    assert_built_by(WorkPoolReply, pool)
    assert [q["name"] for q in pool["queues"]] == ["default", "urgent"]
    for queue in pool["queues"] + get(server, "work_pools/replies-pool/queues"):
        assert_built_by(WorkQueueReply, queue)
    workers = get(server, "work_pools/replies-pool/workers")
    assert workers and workers[0]["status"] == "ONLINE"
    for worker in workers:
        assert_built_by(WorkerReply, worker)

    deployment = get(server, f"deployments/{resources['deployment']['id']}")
    assert_built_by(DeploymentReply, deployment)
    # A schedule's declared fields come first, then its kind's own.
    schedule = deployment["schedules"][0]
    assert list(schedule)[:3] == list(ScheduleReply.model_fields)
    assert schedule["interval"] == 3600

    run_id = resources["run"]["id"]
    run = get(server, f"flow_runs/{run_id}")
    assert_built_by(FlowRunReply, run)
    assert_built_by(StateReply, run["state"])
    for listed in get(server, "flow_runs?limit=5"):
        assert_built_by(FlowRunReply, listed)

    page = get(server, f"flow_runs/{run_id}/logs")
    LogsPageReply.model_validate(page)
    assert any("artifact written" in line["message"] for line in page["items"])
    for line in page["items"]:
        assert_built_by(LogLineReply, line)

    artifacts = get(server, f"flow_runs/{run_id}/artifacts")
    assert [a["name"] for a in artifacts] == ["report.txt"]
    assert_built_by(RunFileReply, artifacts[0])


def test_a_reply_refuses_fields_it_does_not_declare_or_lacks():
    fields = {name: None for name in RunFileReply.model_fields}
    assert list(RunFileReply.build(**fields)) == list(RunFileReply.model_fields)
    with pytest.raises(TypeError, match="undeclared fields \\['colour'\\]"):
        RunFileReply.build(**fields, colour="red")
    with pytest.raises(TypeError, match="missing \\['size'\\]"):
        RunFileReply.build(**{k: v for k, v in fields.items() if k != "size"})
    assert issubclass(RunFileReply, Reply)


def test_the_pages_take_their_states_from_the_server(server):
    headers = {"Authorization": f"token {server.token}"}
    page = httpx.get(server.url + "nbflows/runs", headers=headers, timeout=60).text
    terminal = " ".join(sorted(TERMINAL_VALUES))
    assert f'data-terminal-states="{terminal}"' in page
    script = httpx.get(server.url + "nbflows/static/run.js", headers=headers, timeout=60).text
    assert "dataset.terminalStates" in script
    for state in StateType:
        assert f'"{state.value}"' not in script, f"run.js names {state.value} itself"
