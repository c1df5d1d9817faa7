"""The REST API against a real Jupyter server subprocess (no embedded worker: runs stay put)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .servers import Server, ok, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("api"), embedded_worker=False)
    try:
        yield server
    finally:
        server.stop()


def error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"message", "reason"}
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


def source(cell: dict[str, Any]) -> str:
    text = cell["source"]
    return "".join(text) if isinstance(text, list) else text


def make_pool(srv: Server, name: str, type: str = "process", **extra: Any) -> dict[str, Any]:
    return ok(srv.http("POST", "work_pools", json={"name": name, "type": type, **extra}), 201)


def deploy(srv: Server, **body: Any) -> httpx.Response:
    return srv.http("POST", "deployments", json=body)


# ---- the API surface ----------------------------------------------------------------------------


def test_openapi_lists_every_route_and_each_answers(srv: Server) -> None:
    doc = ok(srv.http("GET", "openapi.json"))
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "/nbflows/api/work_pools/{pool}/claim" in paths
    assert paths["/nbflows/api/work_pools"]["post"]["requestBody"]
    # Every documented route is served: placeholders filled with names that do not exist answer
    # with a JSON 404/4xx from nbflows, never the server's HTML 404 page.
    for path, ops in paths.items():
        concrete = path.removeprefix("/nbflows/api/")
        for name in ("pool", "queue", "ref", "run_id", "flow", "name", "kind"):
            concrete = concrete.replace("{" + name + "}", "nope")
        for method in ops:
            response = srv.http(method.upper(), concrete, json={} if method != "get" else None)
            assert response.headers["content-type"].startswith("application/json"), (method, path)
            assert response.status_code < 500, (method, path, response.text)


def test_unknown_route_is_a_json_404(srv: Server) -> None:
    error(srv.http("GET", "no/such/thing"), 404, "no nbflows API route")


def test_authentication_is_required(srv: Server) -> None:
    response = httpx.get(srv.api + "work_pools")
    assert response.status_code in (401, 403)
    response = httpx.get(srv.api + "work_pools", headers={"Authorization": "token wrong"})
    assert response.status_code in (401, 403)


def test_health(srv: Server) -> None:
    body = ok(srv.http("GET", "health"))
    assert body["status"] == "ok" and body["database"] == "sqlite"
    assert Path(body["root_dir"]) == srv.root


# ---- work pools and queues ----------------------------------------------------------------------


def test_work_pool_life_cycle(srv: Server) -> None:
    response = srv.http("POST", "work_pools", json={"name": "life", "type": "process"})
    pool = ok(response, 201)
    assert response.headers["Location"].endswith("/nbflows/api/work_pools/life")
    assert pool["status"] == "NOT_READY" and pool["paused"] is False
    assert [q["name"] for q in pool["queues"]] == ["default"]
    assert "working_dir" in pool["base_job_template"]["variables"]["properties"]
    assert "life" in [p["name"] for p in ok(srv.http("GET", "work_pools"))]
    paused = ok(srv.http("PATCH", "work_pools/life", json={"paused": True, "concurrency_limit": 2}))
    assert paused["status"] == "PAUSED" and paused["concurrency_limit"] == 2
    ok(srv.http("DELETE", "work_pools/life"), 204)
    error(srv.http("GET", "work_pools/life"), 404, "no work pool named 'life'")


def test_work_pool_refusals(srv: Server) -> None:
    make_pool(srv, "dup")
    error(
        srv.http("POST", "work_pools", json={"name": "dup", "type": "process"}),
        409,
        "exists already",
    )
    error(
        srv.http("POST", "work_pools", json={"name": "t", "type": "k8s"}),
        422,
        "valid types: process, docker",
    )
    error(
        srv.http("POST", "work_pools", json={"name": "bad name!", "type": "process"}), 422, "name"
    )
    error(
        srv.http("POST", "work_pools", json={"name": "x", "type": "process", "colour": 1}),
        422,
        "unknown field",
    )
    error(srv.http("POST", "work_pools", content=b"{not json"), 400, "not valid JSON")
    error(srv.http("POST", "work_pools", json=[1, 2]), 400, "JSON object")
    bad_template = {
        "job_configuration": {"x": "{{ y }}"},
        "variables": {"type": "object", "properties": {}},
    }
    error(
        srv.http(
            "POST",
            "work_pools",
            json={"name": "tpl", "type": "process", "base_job_template": bad_template},
        ),
        422,
    )
    names = [p["name"] for p in ok(srv.http("GET", "work_pools"))]
    assert "tpl" not in names and "x" not in names


def test_default_base_job_templates(srv: Server) -> None:
    types = ok(srv.http("GET", "work_pool_types"))
    assert {t["type"] for t in types} == {"process", "docker"}
    docker = ok(srv.http("GET", "work_pool_types/docker/base_job_template"))
    assert {"image", "mem_limit", "volumes"} <= set(docker["variables"]["properties"])
    error(srv.http("GET", "work_pool_types/k8s/base_job_template"), 404, "process, docker")


def test_work_queues(srv: Server) -> None:
    make_pool(srv, "queued")
    high = ok(srv.http("POST", "work_pools/queued/queues", json={"name": "high"}), 201)
    assert high["priority"] == 2
    ok(srv.http("POST", "work_pools/queued/queues", json={"name": "urgent", "priority": 1}), 201)
    error(
        srv.http("POST", "work_pools/queued/queues", json={"name": "high"}),
        409,
        "already has a queue",
    )
    error(srv.http("POST", "work_pools/nopool/queues", json={"name": "q"}), 404, "no work pool")
    assert (
        ok(srv.http("PATCH", "work_pools/queued/queues/high", json={"paused": True}))["paused"]
        is True
    )
    error(srv.http("DELETE", "work_pools/queued/queues/default"), 409, "cannot be deleted")
    ok(srv.http("DELETE", "work_pools/queued/queues/high"), 204)
    names = [q["name"] for q in ok(srv.http("GET", "work_pools/queued/queues"))]
    assert sorted(names) == ["default", "urgent"]
    error(srv.http("GET", "work_pools/queued/queues/high"), 404, "its queues: ")


# ---- deployments --------------------------------------------------------------------------------


def test_deploy_whole_notebook_and_cell_flow(srv: Server) -> None:
    make_pool(srv, "deploy-pool")
    response = deploy(srv, path="repo_info.ipynb", name="whole", work_pool_name="deploy-pool")
    whole = ok(response, 201)
    assert whole["full_name"] == "repo_info/whole" and whole["kind"] == "notebook"
    assert whole["parameter_schema"]["properties"]["repo_name"]["type"] == "string"
    assert whole["working_dir"] == str(srv.root)
    cell = ok(
        deploy(
            srv,
            path="repo_info.ipynb",
            flow_name="get_repo_info",
            name="cell",
            work_pool_name="deploy-pool",
            parameters={"repo_name": "nteract/papermill"},
        ),
        201,
    )
    assert cell["full_name"] == "get_repo_info/cell" and cell["kind"] == "cell"
    assert cell["entrypoint"] == "repo_info.ipynb:get_repo_info"
    frozen = ok(srv.http("GET", f"deployments/{cell['id']}/notebook"))
    sources = [source(c) for c in frozen["cells"]]
    assert sources[-1].startswith("%%flow get_repo_info")
    assert not any(".deploy(" in s for s in sources)
    by_name = ok(srv.http("GET", "deployments/name/get_repo_info/cell"))
    assert by_name["id"] == cell["id"]
    listed = ok(srv.http("GET", "deployments", params={"work_pool_name": "deploy-pool"}))
    assert {d["full_name"] for d in listed} == {"repo_info/whole", "get_repo_info/cell"}


def test_redeploy_is_a_new_frozen_version(srv: Server) -> None:
    make_pool(srv, "versions")
    notebook = srv.root / "versioned.ipynb"
    shutil.copy(srv.root / "trivial.ipynb", notebook)
    first = ok(deploy(srv, path="versioned.ipynb", name="v", work_pool_name="versions"), 201)
    assert first["version"] == 1
    nb = json.loads(notebook.read_text())
    nb["cells"][1]["source"] = "print('edited')"
    notebook.write_text(json.dumps(nb))
    # The snapshot does not follow the file until the user deploys again.
    frozen = ok(srv.http("GET", f"deployments/{first['id']}/notebook"))
    assert source(frozen["cells"][1]) == "print(x + 1)"
    second = ok(deploy(srv, path="versioned.ipynb", name="v", work_pool_name="versions"), 200)
    assert second["id"] == first["id"] and second["version"] == 2
    assert (
        source(ok(srv.http("GET", f"deployments/{first['id']}/notebook"))["cells"][1])
        == "print('edited')"
    )
    old = ok(srv.http("GET", f"deployments/{first['id']}/notebook", params={"version": 1}))
    assert source(old["cells"][1]) == "print(x + 1)"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"path": "missing.ipynb"}, 404, "not found"),
        ({"path": "../outside.ipynb"}, 422, "outside the server's root directory"),
        ({"path": "/etc/passwd"}, 422, "outside the server's root directory"),
        ({"path": "nokernel.ipynb"}, 422, "kernel"),
        ({"work_pool_name": "no-such-pool"}, 404, "no work pool named 'no-such-pool'"),
        ({"work_queue_name": "nope"}, 404, "has no queue named 'nope'"),
        ({"flow_name": "nope"}, 404, "get_repo_info"),
        ({"parameters": {"repo": "x"}}, 422, "repo_name"),
        ({"parameters": {"repo_name": 3}}, 422, "repo_name"),
        ({"schedules": [{"kind": "cron", "cron": "61 * * * *"}]}, 422, "cron"),
        ({"schedules": [{"kind": "rrule", "rrule": "FREQ=SOMETIMES"}]}, 422, "rrule"),
        (
            {"schedules": [{"kind": "cron", "cron": "0 6 * * *", "timezone": "Mars/Olympus"}]},
            422,
            "Mars/Olympus",
        ),
        ({"schedules": [{"kind": "weekly"}]}, 422, "kind"),
        ({"job_variables": {"imagee": "x"}}, 422, "allowed variables"),
        ({"job_variables": {"timeout": "soon"}}, 422, "timeout"),
        ({"name": ""}, 422, "name"),
    ],
)
def test_deploy_refusals_change_nothing(
    srv: Server, body: dict[str, Any], status: int, fragment: str
) -> None:
    if not any(p["name"] == "refusals" for p in ok(srv.http("GET", "work_pools"))):
        make_pool(srv, "refusals")
    nokernel = srv.root / "nokernel.ipynb"
    if not nokernel.exists():
        nb = json.loads((srv.root / "trivial.ipynb").read_text())
        del nb["metadata"]["kernelspec"]
        nokernel.write_text(json.dumps(nb))
    request = {"path": "repo_info.ipynb", "name": "refused", "work_pool_name": "refusals", **body}
    error(deploy(srv, **request), status, fragment)
    listed = ok(srv.http("GET", "deployments", params={"work_pool_name": "refusals"}))
    assert listed == []


def test_pinned_job_variables_cannot_be_overridden(srv: Server) -> None:
    template = ok(srv.http("GET", "work_pool_types/process/base_job_template"))
    template["job_configuration"]["timeout"] = 60  # the admin pins the timeout
    del template["variables"]["properties"]["timeout"]
    make_pool(srv, "pinned", base_job_template=template)
    error(
        deploy(
            srv,
            path="trivial.ipynb",
            name="p",
            work_pool_name="pinned",
            job_variables={"timeout": 5},
        ),
        422,
        "timeout",
    )
    d = ok(
        deploy(
            srv,
            path="trivial.ipynb",
            name="p",
            work_pool_name="pinned",
            job_variables={"env": {"A": "1"}},
        ),
        201,
    )
    error(
        srv.http("POST", f"deployments/{d['id']}/runs", json={"job_variables": {"timeout": 1}}),
        422,
        "pinned",
    )


def test_deployment_update_pause_and_delete(srv: Server) -> None:
    make_pool(srv, "upd")
    d = ok(deploy(srv, path="trivial.ipynb", name="u", work_pool_name="upd"), 201)
    updated = ok(
        srv.http("PATCH", f"deployments/{d['id']}", json={"paused": True, "parameters": {"x": 5}})
    )
    assert updated["paused"] is True and updated["parameters"] == {"x": 5}
    error(srv.http("PATCH", f"deployments/{d['id']}", json={"parameters": {"x": "five"}}), 422, "x")
    error(srv.http("DELETE", "work_pools/upd"), 409, "trivial/u")
    ok(srv.http("DELETE", f"deployments/{d['id']}"), 204)
    error(srv.http("GET", f"deployments/{d['id']}"), 404)
    ok(srv.http("DELETE", "work_pools/upd"), 204)


# ---- flow runs, states, logs, notebooks ---------------------------------------------------------


def new_run(srv: Server, deployment: dict[str, Any], **body: Any) -> dict[str, Any]:
    return ok(srv.http("POST", f"deployments/{deployment['id']}/runs", json=body), 201)


def set_state(srv: Server, run_id: str, type: str, **extra: Any) -> httpx.Response:
    return srv.http("POST", f"flow_runs/{run_id}/set_state", json={"type": type, **extra})


def claim(srv: Server, pool: str, worker: str = "w1", **extra: Any) -> list[dict[str, Any]]:
    return ok(srv.http("POST", f"work_pools/{pool}/claim", json={"worker": worker, **extra}))


def test_run_parameters_and_state_rules(srv: Server) -> None:
    make_pool(srv, "runs")
    d = ok(
        deploy(srv, path="trivial.ipynb", name="r", work_pool_name="runs", parameters={"x": 2}), 201
    )
    run = new_run(srv, d, parameters={"x": 3})
    assert run["state"]["type"] == "SCHEDULED" and run["parameters"] == {"x": 3}
    assert run["deployment_name"] == "trivial/r" and run["work_pool_name"] == "runs"
    error(
        srv.http("POST", f"deployments/{d['id']}/runs", json={"parameters": {"y": 1}}),
        422,
        "Valid parameters: x",
    )
    error(
        srv.http("POST", f"deployments/{d['id']}/runs", json={"parameters": {"x": "a"}}), 422, "x"
    )
    error(set_state(srv, run["id"], "COMPLETED"), 409, "cannot become COMPLETED")
    error(set_state(srv, run["id"], "DONE"), 422, "valid states")
    [claimed] = claim(srv, "runs")
    assert claimed["flow_run"]["id"] == run["id"]
    assert claimed["flow_run"]["state"]["type"] == "PENDING"
    assert claimed["deployment"]["full_name"] == "trivial/r"
    assert claimed["job_configuration"]["working_dir"] is None
    assert claim(srv, "runs", worker="w2") == []
    running = ok(set_state(srv, run["id"], "RUNNING"))
    assert running["start_time"] and running["worker_name"] == "w1"
    done = ok(set_state(srv, run["id"], "COMPLETED"))
    assert done["end_time"] and done["duration"] is not None
    error(set_state(srv, run["id"], "RUNNING"), 409, "terminal")
    default = new_run(srv, d)
    assert default["parameters"] == {"x": 2}
    listed = ok(
        srv.http("GET", "flow_runs", params={"deployment_id": d["id"], "state": "COMPLETED"})
    )
    assert [r["id"] for r in listed] == [run["id"]]
    error(srv.http("GET", "flow_runs", params={"state": "DONE"}), 422, "valid states")
    error(srv.http("GET", "flow_runs", params={"limit": "many"}), 400, "limit")
    error(srv.http("GET", "flow_runs/nope"), 404, "no flow run")


def test_idempotency_key_returns_the_same_run(srv: Server) -> None:
    make_pool(srv, "idem")
    d = ok(deploy(srv, path="trivial.ipynb", name="i", work_pool_name="idem"), 201)
    first = new_run(srv, d, idempotency_key="k1")
    again = ok(srv.http("POST", f"deployments/{d['id']}/runs", json={"idempotency_key": "k1"}), 200)
    assert again["id"] == first["id"]


def test_cancel(srv: Server) -> None:
    make_pool(srv, "cancel")
    d = ok(deploy(srv, path="trivial.ipynb", name="c", work_pool_name="cancel"), 201)
    waiting = new_run(srv, d)
    cancelled = ok(srv.http("POST", f"flow_runs/{waiting['id']}/cancel"))
    assert cancelled["state"]["type"] == "CANCELLED"
    assert claim(srv, "cancel") == []  # a cancelled run is never started
    running = new_run(srv, d)
    claim(srv, "cancel", worker="wc")
    ok(set_state(srv, running["id"], "RUNNING"))
    assert (
        ok(srv.http("POST", f"flow_runs/{running['id']}/cancel"))["state"]["type"] == "CANCELLING"
    )
    beat = ok(
        srv.http(
            "POST",
            "work_pools/cancel/workers/heartbeat",
            json={"name": "wc", "running": [running["id"]]},
        )
    )
    assert beat["cancel"] == [running["id"]]
    ok(set_state(srv, running["id"], "CANCELLED"))
    error(srv.http("POST", f"flow_runs/{running['id']}/cancel"), 409, "terminal")


def test_logs_are_capped_and_read_incrementally(srv: Server) -> None:
    make_pool(srv, "logs")
    d = ok(
        deploy(
            srv,
            path="trivial.ipynb",
            name="l",
            work_pool_name="logs",
            job_variables={"log_limit": 5},
        ),
        201,
    )
    run = new_run(srv, d)
    lines = [{"message": f"line {i}", "cell_index": 1} for i in range(3)]
    assert ok(srv.http("POST", f"flow_runs/{run['id']}/logs", json=lines), 201) == {
        "accepted": 3,
        "truncated": False,
    }
    more = [{"message": f"more {i}"} for i in range(4)]
    assert ok(srv.http("POST", f"flow_runs/{run['id']}/logs", json=more), 201) == {
        "accepted": 2,
        "truncated": True,
    }
    page = ok(srv.http("GET", f"flow_runs/{run['id']}/logs"))
    messages = [x["message"] for x in page["items"]]
    assert messages[:5] == ["line 0", "line 1", "line 2", "more 0", "more 1"]
    assert "log limit of 5 lines reached" in messages[5]
    assert page["flow_run"]["logs_truncated"] is True
    after = ok(
        srv.http("GET", f"flow_runs/{run['id']}/logs", params={"after": page["items"][2]["id"]})
    )
    assert [x["message"] for x in after["items"]][:2] == ["more 0", "more 1"]
    error(srv.http("POST", f"flow_runs/{run['id']}/logs", json=[{"level": 20}]), 422, "message")


#: The longest long-poll the server grants. A poll woken by the change answers in milliseconds;
#: one that is not woken answers only when it times out (a claim also when its run goes Late,
#: 15 s after it was due). The wake-up tests ask for POLL and assert an answer within AT_ONCE,
#: so that they fail when wake-ups are broken.
POLL = 30.0
AT_ONCE = 8.0


def parked(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start the long-poll `call()` in a thread and give it time to park on the server; the
    dict gets its `result` and the monotonic time `at` it was answered."""
    got: dict[str, Any] = {}

    def run() -> None:
        got["result"] = call()
        got["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)
    return thread, got


def answered_at_once(thread: threading.Thread, got: dict[str, Any], since: float) -> Any:
    thread.join(POLL + 30)
    waited = got["at"] - since
    assert waited < AT_ONCE, f"the long poll was not woken: answered after {waited:.1f} s"
    return ok(got["result"])


def test_logs_long_poll_wakes_on_new_lines(srv: Server) -> None:
    make_pool(srv, "follow")
    d = ok(deploy(srv, path="trivial.ipynb", name="f", work_pool_name="follow"), 201)
    run = new_run(srv, d)
    logs = f"flow_runs/{run['id']}/logs"
    thread, got = parked(lambda: srv.http("GET", logs, params={"wait": POLL}))
    posted = time.monotonic()
    ok(srv.http("POST", logs, json=[{"message": "hello"}]), 201)
    page = answered_at_once(thread, got, posted)
    assert [x["message"] for x in page["items"]] == ["hello"]
    # A state change wakes a follower that told the state it saw.
    after = {"wait": POLL, "after": page["next_after"], "state": "SCHEDULED"}
    thread, got = parked(lambda: srv.http("GET", logs, params=after))
    changed = time.monotonic()
    ok(srv.http("POST", f"flow_runs/{run['id']}/cancel"))
    page = answered_at_once(thread, got, changed)
    assert page["items"] == [] and page["flow_run"]["state"]["type"] == "CANCELLED"


def test_executed_notebook_store(srv: Server) -> None:
    make_pool(srv, "nbs")
    d = ok(deploy(srv, path="trivial.ipynb", name="n", work_pool_name="nbs"), 201)
    run = new_run(srv, d)
    error(srv.http("GET", f"flow_runs/{run['id']}/notebook"), 404, "no executed notebook")
    nb = json.loads((srv.root / "trivial.ipynb").read_text())
    ok(srv.http("PUT", f"flow_runs/{run['id']}/notebook", json=nb), 204)
    assert ok(srv.http("GET", f"flow_runs/{run['id']}/notebook"))["cells"] == nb["cells"]
    assert ok(srv.http("GET", f"flow_runs/{run['id']}"))["has_notebook"] is True
    error(srv.http("PUT", f"flow_runs/{run['id']}/notebook", json={"x": 1}), 422, "notebook")


def test_interactive_runs(srv: Server) -> None:
    run = ok(
        srv.http("POST", "flow_runs", json={"flow_name": "adhoc", "parameters": {"a": 1}}), 201
    )
    assert run["kind"] == "interactive" and run["state"]["type"] == "RUNNING" and run["start_time"]
    child = ok(
        srv.http("POST", "flow_runs", json={"flow_name": "child", "parent_run_id": run["id"]}), 201
    )
    ok(set_state(srv, child["id"], "COMPLETED"))
    ok(set_state(srv, run["id"], "FAILED", message="boom"))
    # interactive runs are not retried by the server
    assert ok(srv.http("GET", f"flow_runs/{run['id']}"))["state"]["type"] == "FAILED"
    kids = ok(srv.http("GET", "flow_runs", params={"parent_run_id": run["id"]}))
    assert [k["id"] for k in kids] == [child["id"]]


# ---- claims -------------------------------------------------------------------------------------


def test_claim_long_poll_is_woken_by_a_new_run(srv: Server) -> None:
    make_pool(srv, "wake")
    d = ok(deploy(srv, path="trivial.ipynb", name="w", work_pool_name="wake"), 201)
    body = {"worker": "w1", "wait": POLL}
    thread, got = parked(lambda: srv.http("POST", "work_pools/wake/claim", json=body))
    created = time.monotonic()
    run = new_run(srv, d)
    claimed = answered_at_once(thread, got, created)
    assert [c["flow_run"]["id"] for c in claimed] == [run["id"]]


def test_heartbeat_long_poll_is_woken_by_a_cancellation(srv: Server) -> None:
    make_pool(srv, "beat")
    d = ok(deploy(srv, path="trivial.ipynb", name="b", work_pool_name="beat"), 201)
    run = new_run(srv, d)
    [claimed] = claim(srv, "beat", worker="wb")
    ok(set_state(srv, run["id"], "RUNNING", worker="wb", fence=claimed["fence"]))
    beat = {"name": "wb", "running": [run["id"]], "wait": POLL, "heartbeat_interval": POLL}
    path = "work_pools/beat/workers/heartbeat"
    assert ok(srv.http("POST", path, json=beat | {"wait": 0}))["cancel"] == []
    thread, got = parked(lambda: srv.http("POST", path, json=beat))
    cancelled = time.monotonic()
    ok(srv.http("POST", f"flow_runs/{run['id']}/cancel"))
    assert answered_at_once(thread, got, cancelled)["cancel"] == [run["id"]]


def test_claims_follow_queue_priority_limits_and_pauses(srv: Server) -> None:
    make_pool(srv, "prio", concurrency_limit=2)
    ok(srv.http("POST", "work_pools/prio/queues", json={"name": "low", "priority": 5}), 201)
    ok(srv.http("POST", "work_pools/prio/queues", json={"name": "high", "priority": 1}), 201)
    ok(srv.http("PATCH", "work_pools/prio/queues/default", json={"priority": 3}))
    low = ok(
        deploy(srv, path="trivial.ipynb", name="low", work_pool_name="prio", work_queue_name="low"),
        201,
    )
    high = ok(
        deploy(
            srv, path="trivial.ipynb", name="high", work_pool_name="prio", work_queue_name="high"
        ),
        201,
    )
    low_run = new_run(srv, low)
    high_run = new_run(srv, high)
    [first] = claim(srv, "prio")
    assert first["flow_run"]["id"] == high_run["id"]
    extra = new_run(srv, high)
    [second] = claim(srv, "prio", limit=5)
    assert second["flow_run"]["id"] == extra["id"]
    assert claim(srv, "prio") == []  # pool concurrency limit 2 reached
    ok(set_state(srv, first["flow_run"]["id"], "RUNNING"))
    ok(set_state(srv, first["flow_run"]["id"], "COMPLETED"))
    ok(srv.http("PATCH", f"deployments/{low['id']}", json={"paused": True}))
    assert claim(srv, "prio") == []  # a paused deployment's runs are not handed out
    ok(srv.http("PATCH", f"deployments/{low['id']}", json={"paused": False}))
    ok(srv.http("PATCH", "work_pools/prio", json={"paused": True}))
    assert claim(srv, "prio") == []  # nor a paused pool's
    ok(srv.http("PATCH", "work_pools/prio", json={"paused": False}))
    assert [c["flow_run"]["id"] for c in claim(srv, "prio")] == [low_run["id"]]
    error(
        srv.http("POST", "work_pools/prio/claim", json={"worker": "w", "queues": ["nope"]}),
        404,
        "no queue",
    )


def test_a_failed_run_with_retries_left_is_rescheduled(srv: Server) -> None:
    make_pool(srv, "retry")
    d = ok(
        deploy(srv, path="trivial.ipynb", name="retried", work_pool_name="retry", retries=1), 201
    )
    run = new_run(srv, d)
    claim(srv, "retry")
    ok(set_state(srv, run["id"], "RUNNING"))
    again = ok(set_state(srv, run["id"], "FAILED", message="ZeroDivisionError"))
    assert again["state"]["type"] == "SCHEDULED" and again["state"]["name"] == "AwaitingRetry"
    assert again["attempt"] == 2 and again["worker_name"] is None
    [claimed] = claim(srv, "retry")
    assert claimed["flow_run"]["attempt"] == 2
    ok(set_state(srv, run["id"], "RUNNING"))
    final = ok(set_state(srv, run["id"], "FAILED", message="again"))
    assert final["state"]["type"] == "FAILED"  # no retries left


def test_runs_of_a_silent_worker_crash(srv: Server) -> None:
    make_pool(srv, "silent")
    d = ok(deploy(srv, path="trivial.ipynb", name="s", work_pool_name="silent"), 201)
    run = new_run(srv, d)
    ok(
        srv.http(
            "POST",
            "work_pools/silent/workers/heartbeat",
            json={"name": "ghost", "heartbeat_interval": 0.3},
        )
    )
    claim(srv, "silent", worker="ghost")
    ok(set_state(srv, run["id"], "RUNNING"))
    workers = ok(srv.http("GET", "work_pools/silent/workers"))
    assert workers[0]["name"] == "ghost"
    deadline = time.monotonic() + 30
    state = "RUNNING"
    while time.monotonic() < deadline and state == "RUNNING":
        time.sleep(0.3)
        current = ok(srv.http("GET", f"flow_runs/{run['id']}"))
        state = current["state"]["type"]
    assert state == "CRASHED"
    assert "stopped heartbeating" in current["state"]["message"]


# ---- schedules ----------------------------------------------------------------------------------


def test_cron_schedule_creates_upcoming_runs(srv: Server) -> None:
    make_pool(srv, "cron")
    d = ok(
        deploy(
            srv,
            path="trivial.ipynb",
            name="every-minute",
            work_pool_name="cron",
            schedules=[{"kind": "cron", "cron": "* * * * *", "timezone": "Europe/Paris"}],
        ),
        201,
    )
    assert d["schedules"][0]["cron"] == "* * * * *"
    upcoming: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(upcoming) < 3:
        time.sleep(0.3)
        upcoming = ok(srv.http("GET", f"deployments/{d['id']}/upcoming", params={"limit": 100}))
    assert len(upcoming) >= 3
    times = [r["expected_start_time"] for r in upcoming]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(t.endswith(":00+00:00") for t in times)


def test_schedules_are_idempotent_across_restarts(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"

    def upcoming_after_restart() -> list[str]:
        server = start_server(
            tmp_path / f"s{time.monotonic_ns()}",
            embedded_worker=False,
            db_url=db,
            root=tmp_path / "root",
        )
        try:
            if not ok(server.http("GET", "work_pools")):
                make_pool(server, "idem-cron")
                ok(
                    deploy(
                        server,
                        path="trivial.ipynb",
                        name="m",
                        work_pool_name="idem-cron",
                        schedules=[{"kind": "cron", "cron": "* * * * *"}],
                    ),
                    201,
                )
            times: list[str] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(times) < 3:
                time.sleep(0.3)
                runs = ok(
                    server.http("GET", "flow_runs", params={"limit": 1000, "state": "SCHEDULED"})
                )
                times = [r["expected_start_time"] for r in runs]
            time.sleep(1.5)  # let another scheduler pass run
            runs = ok(server.http("GET", "flow_runs", params={"limit": 1000, "state": "SCHEDULED"}))
            return [r["expected_start_time"] for r in runs]
        finally:
            server.stop()

    (tmp_path / "root").mkdir()
    shutil.copy(Path(__file__).parents[1] / "notebooks" / "trivial.ipynb", tmp_path / "root")
    first = upcoming_after_restart()
    second = upcoming_after_restart()
    third = upcoming_after_restart()
    for times in (first, second, third):
        assert len(times) >= 3
        assert len(times) == len(set(times)), "a scheduled time got two runs"
    assert set(first) <= set(third)


READ_ONLY = '''
from jupyter_server.auth.authorizer import Authorizer


class ReadOnlyNBFlows(Authorizer):
    """Users may look at nbflows but not change anything."""

    def is_authorized(self, handler, user, action, resource):
        return not resource.startswith("nbflows") or action == "read"
'''


def test_every_route_is_authorized_on_an_nbflows_resource(tmp_path: Path) -> None:
    import os

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "read_only_nbflows.py").write_text(READ_ONLY)
    pythonpath = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
    server = start_server(
        tmp_path / "srv",
        embedded_worker=False,
        extra_args=["--ServerApp.authorizer_class=read_only_nbflows.ReadOnlyNBFlows"],
        env={"PYTHONPATH": pythonpath},
    )
    try:
        assert server.http("GET", "work_pools").status_code == 200
        assert (
            server.http("POST", "work_pools", json={"name": "p", "type": "process"}).status_code
            == 403
        )
        assert server.http("POST", "work_pools/p/claim", json={"worker": "w"}).status_code == 403
        assert server.http("DELETE", "deployments/x").status_code == 403
        assert server.http("GET", "work_pools").json() == []
    finally:
        server.stop()


def test_reports_of_a_worker_that_lost_its_run_are_refused(srv: Server) -> None:
    make_pool(srv, "lost")
    d = ok(deploy(srv, path="trivial.ipynb", name="lost", work_pool_name="lost", retries=1), 201)
    run = new_run(srv, d)
    [a] = claim(srv, "lost", worker="a")
    ok(set_state(srv, run["id"], "RUNNING", worker="a", fence=a["fence"]))
    # Worker a is cut off: its attempt is crashed and retried, and worker b takes it.
    retried = ok(set_state(srv, run["id"], "CRASHED", message="worker 'a' stopped heartbeating"))
    assert retried["state"]["name"] == "AwaitingRetry" and retried["attempt"] == 2
    [b] = claim(srv, "lost", worker="b")
    ok(set_state(srv, run["id"], "RUNNING", worker="b", fence=b["fence"]))
    # a comes back still running attempt 1: told to stop, and its report changes nothing.
    beat = ok(
        srv.http(
            "POST", "work_pools/lost/workers/heartbeat", json={"name": "a", "running": [run["id"]]}
        )
    )
    assert beat["cancel"] == [run["id"]]
    error(
        set_state(srv, run["id"], "COMPLETED", worker="a", fence=a["fence"]), 409, "no longer holds"
    )
    assert ok(srv.http("GET", f"flow_runs/{run['id']}"))["state"]["type"] == "RUNNING"
    beat = ok(
        srv.http(
            "POST", "work_pools/lost/workers/heartbeat", json={"name": "b", "running": [run["id"]]}
        )
    )
    assert beat["cancel"] == []


def test_malformed_query_and_heartbeat_values_are_4xx(srv: Server) -> None:
    make_pool(srv, "values")
    d = ok(deploy(srv, path="trivial.ipynb", name="values", work_pool_name="values"), 201)
    run = new_run(srv, d)
    error(srv.http("GET", f"flow_runs/{run['id']}/logs", params={"wait": "nan"}), 400, "finite")
    error(srv.http("GET", "flow_runs", params={"offset": "-1"}), 422, "offset")
    error(
        srv.http("POST", "work_pools/values/workers/heartbeat", json={"name": "w", "wait": "soon"}),
        422,
        "wait",
    )


def test_secrets_stay_hidden_after_the_pool_is_gone(srv: Server) -> None:
    make_pool(srv, "secret")
    d = ok(deploy(srv, path="trivial.ipynb", name="secret", work_pool_name="secret"), 201)
    run = new_run(srv, d, job_variables={"env": {"API_TOKEN": "s3cr3t", "MODE": "x"}})
    assert run["job_variables"]["env"] == {"API_TOKEN": "********", "MODE": "x"}
    claim(srv, "secret")
    ok(set_state(srv, run["id"], "RUNNING"))
    ok(set_state(srv, run["id"], "COMPLETED"))
    ok(srv.http("DELETE", f"deployments/{d['id']}"), 204)
    ok(srv.http("DELETE", "work_pools/secret"), 204)
    again = ok(srv.http("GET", f"flow_runs/{run['id']}"))
    assert again["work_pool_name"] is None
    assert again["job_variables"]["env"] == {"API_TOKEN": "********", "MODE": "x"}
    assert "s3cr3t" not in srv.http("GET", "flow_runs", params={"limit": 1000}).text
