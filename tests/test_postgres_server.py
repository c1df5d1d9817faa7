"""At scale: two servers sharing one PostgreSQL store, each with its scheduler and worker.

Wake-ups cross servers: a change made through one server wakes long polls parked on the other.
Those tests ask for the longest poll the server grants and assert the answer came far sooner,
so they fail when a wake-up is lost (the poll would then end only by its timeout, or when the
run goes Late, after 15 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .pg_support import postgres_server
from .servers import Server, ok, start_server

# One PostgreSQL and two servers for the module: its tests go to one xdist worker.
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("postgres-servers")]

#: The longest long-poll the server grants (`MAX_WAIT` in extension/routes.py).
POLL = 30.0
#: A woken poll answers in milliseconds; one that was not woken waits 15 s or more.
AT_ONCE = 8.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("pg")
    with postgres_server() as url:
        first = start_server(tmp / "a", db_url=url)
        try:
            second = start_server(tmp / "b", db_url=url, root=first.root)
            try:
                yield first, second
            finally:
                second.stop()
        finally:
            first.stop()


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `call()` in a thread; the dict gets its `result` and the monotonic time `at` it
    returned."""
    got: dict[str, Any] = {}

    def run() -> None:
        got["result"] = call()
        got["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)  # the request is parked on its server by now
    return thread, got


def test_two_servers_on_one_postgresql(servers: tuple[Server, Server]) -> None:
    first, second = servers
    assert first.client().health()["database"] == "postgresql"
    client = first.client()
    client.create_work_pool("shared", "process")
    client.deploy(
        path="trivial.ipynb",
        name="every-minute",
        work_pool_name="shared",
        schedules=[{"kind": "cron", "cron": "* * * * *"}],
    )
    runs = [
        second.client().create_flow_run_from_deployment("trivial/every-minute", parameters={"x": i})
        for i in range(6)
    ]
    finals = [client.watch_flow_run(r["id"], timeout=120) for r in runs]
    assert [f["state"]["type"] for f in finals] == ["COMPLETED"] * 6
    workers = {f["worker_name"] for f in finals}
    assert workers <= {w["name"] for w in client.list_workers("shared")}
    time.sleep(2.5)  # both schedulers have made passes by now
    upcoming = client.upcoming_runs("trivial/every-minute", limit=1000)
    times = [r["expected_start_time"] for r in upcoming]
    assert len(times) >= 3 and len(times) == len(set(times)), "duplicated scheduled runs"


def test_a_run_created_on_one_server_wakes_a_claim_waiting_on_the_other(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    # A docker pool: the embedded workers (process pools) leave its runs to this test's claim.
    ok(first.http("POST", "work_pools", json={"name": "cross", "type": "docker"}), 201)
    body = {"path": "trivial.ipynb", "name": "cross", "work_pool_name": "cross"}
    deployment = ok(first.http("POST", "deployments", json=body), 201)
    claim = {"worker": "remote", "wait": POLL}
    thread, got = in_background(lambda: second.http("POST", "work_pools/cross/claim", json=claim))
    created = time.monotonic()
    run = ok(first.http("POST", f"deployments/{deployment['id']}/runs", json={}), 201)
    thread.join(POLL + 30)
    assert [c["flow_run"]["id"] for c in ok(got["result"])] == [run["id"]]
    waited = got["at"] - created
    assert waited < AT_ONCE, f"the claim on the other server was answered after {waited:.1f} s"


def test_logs_and_cancellations_wake_long_polls_on_the_other_server(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    ok(first.http("POST", "work_pools", json={"name": "follow", "type": "docker"}), 201)
    body = {"path": "trivial.ipynb", "name": "follow", "work_pool_name": "follow"}
    deployment = ok(first.http("POST", "deployments", json=body), 201)
    run = ok(first.http("POST", f"deployments/{deployment['id']}/runs", json={}), 201)
    claimed = ok(second.http("POST", "work_pools/follow/claim", json={"worker": "w"}))
    assert [c["flow_run"]["id"] for c in claimed] == [run["id"]]

    # Log lines written through one server reach a follower on the other.
    logs = f"flow_runs/{run['id']}/logs"
    thread, got = in_background(lambda: second.http("GET", logs, params={"wait": POLL}))
    posted = time.monotonic()
    ok(first.http("POST", logs, json=[{"message": "hello"}]), 201)
    thread.join(POLL + 30)
    assert [x["message"] for x in ok(got["result"])["items"]] == ["hello"]
    assert got["at"] - posted < AT_ONCE, "the log follower was not woken"

    # A cancellation through one server reaches the worker's heartbeat parked on the other.
    beat = {"name": "w", "running": [run["id"]], "wait": POLL, "heartbeat_interval": POLL}
    thread, got = in_background(
        lambda: second.http("POST", "work_pools/follow/workers/heartbeat", json=beat)
    )
    cancelled = time.monotonic()
    ok(first.http("POST", f"flow_runs/{run['id']}/cancel"))
    thread.join(POLL + 30)
    assert ok(got["result"])["cancel"] == [run["id"]]
    assert got["at"] - cancelled < AT_ONCE, "the heartbeat was not woken by the cancellation"


def test_wake_ups_cross_servers_again_after_their_connections_drop(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    from sqlalchemy import create_engine, text

    engine = create_engine(first.db_url)
    try:
        with engine.begin() as conn:
            dropped = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid()"
                    " AND (query LIKE 'LISTEN nbflows%' OR query LIKE '%pg_notify%')"
                )
            ).scalar()
    finally:
        engine.dispose()
    assert dropped, "no wake-up connection found to drop"
    ok(first.http("POST", "work_pools", json={"name": "again", "type": "docker"}), 201)
    body = {"path": "trivial.ipynb", "name": "again", "work_pool_name": "again"}
    deployment = ok(first.http("POST", "deployments", json=body), 201)
    thread, got = in_background(
        lambda: second.http(
            "POST", "work_pools/again/claim", json={"worker": "remote", "wait": POLL}
        )
    )
    created = time.monotonic()
    run = ok(first.http("POST", f"deployments/{deployment['id']}/runs", json={}), 201)
    thread.join(POLL + 30)
    assert [c["flow_run"]["id"] for c in ok(got["result"])] == [run["id"]]
    assert got["at"] - created < AT_ONCE, "wake-ups did not come back after the connections dropped"
    assert "cross-server wake-ups interrupted" in second.log()
