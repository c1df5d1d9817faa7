"""Faults with real processes: servers restarted and killed (-9) under running workers, workers
that vanish after a claim, kernels killed during a `%%flow` run. Every run ends, none runs twice,
no result or log line is lost or stored twice (see `bench/outage.py` for the long version)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbformat.v4 import new_code_cell, new_notebook
from sqlalchemy import select

from nbflows.services import heartbeats
from nbflows.store import tables as t
from nbflows.store.db import Database

from .servers import NBFLOWS_ENV, Server, ok, start_server
from .waiting import wait_for

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

#: A run that leaves one marker file per execution and prints one line a second.
TICKING = [
    ("ticks = 8\nmarkers = 'markers'", ["parameters"]),
    (
        "import os, pathlib, time, uuid\n"
        "run_id = os.environ['NBFLOWS_FLOW_RUN_ID']\n"
        "pathlib.Path(markers).mkdir(exist_ok=True)\n"
        "pathlib.Path(markers, f'{run_id}.{uuid.uuid4().hex}').write_text('')\n"
        "for i in range(ticks):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(1)\n"
        "print('done')",
        [],
    ),
]


def write_notebook(path: Path, cells: list[tuple[str, list[str]]]) -> None:
    nb = new_notebook(
        cells=[new_code_cell(src, metadata={"tags": tags}) for src, tags in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, path)


def state_of(run: dict[str, Any]) -> str:
    return str(run["state"]["type"])


def server_env(server: Server) -> dict[str, str]:
    """The environment `start_server` gave the server (to start it again the same way)."""
    return {
        **{k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV},
        **server.env,
        "PYTHONUNBUFFERED": "1",
    }


def restart(server: Server) -> None:
    """Start the server again with the same command line: same port, token, store and root."""
    assert server.process.poll() is not None, "stop or kill the server first"
    log = server.log_path.open("ab")
    server.process = subprocess.Popen(
        server.process.args,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(server),
        cwd=server.root,
    )
    wait_for(lambda: answers(server), "the restarted server to answer", timeout=90)


def answers(server: Server) -> bool:
    try:
        return server.http("GET", "health").status_code == 200
    except httpx.HTTPError:
        return False


class Worker:
    """`nbflows worker start ARGS` in its own process; `discover=True` gives it no URL or token
    (it finds the server in the runtime dir, as on a user's machine)."""

    def __init__(self, server: Server, out: Path, *args: str, discover: bool = False) -> None:
        self.out = out
        env = server_env(server)
        if not discover:
            env.update(NBFLOWS_API_URL=server.api, NBFLOWS_API_TOKEN=server.token)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nbflows.cli.app", "worker", "start", *args],
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=server.root,
        )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(server: Server, *args: str, discover: bool = False) -> Worker:
        worker = Worker(server, tmp_path / f"worker-{len(started)}.out", *args, discover=discover)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        print(f"--- output of worker {worker.out.name}:\n{worker.output()}")  # shown on failure


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers a test starts (`servers.append(...)`), all stopped at the end."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def online(server: Server, pool: str, names: set[str]) -> bool:
    try:
        workers = server.http("GET", f"work_pools/{pool}/workers").json()
    except httpx.HTTPError:
        return False
    return names <= {w["name"] for w in workers if w["status"] == "ONLINE"}


def messages(server: Server, run_id: str, source: str | None = None) -> list[str]:
    with server.client() as api:
        lines = api.read_logs(run_id, limit=10_000)["items"]
    return [x["message"] for x in lines if source in (None, x["source"])]


# -- defect 7: a worker found by discovery rides out a server restart ---------------------------


@pytest.mark.slow
def test_a_worker_found_by_discovery_serves_on_after_a_restart_with_a_new_token(
    tmp_path: Path, servers: list[Server], start_worker: Callable[..., Worker]
) -> None:
    first = start_server(tmp_path / "srv", embedded_worker=False)
    servers.append(first)
    with first.client() as api:
        api.create_work_pool("p", "process")
        api.deploy(path="trivial.ipynb", name="d", work_pool_name="p")
    worker = start_worker(
        first, "--pool", "p", "--name", "w", "--heartbeat-interval", "1", discover=True
    )
    wait_for(lambda: online(first, "p", {"w"}), "the worker online", timeout=120)

    first.stop()
    # Same store, root and runtime dir; a new port and a new token, as after `nbflows server`.
    second = start_server(tmp_path / "srv", embedded_worker=False)
    servers.append(second)
    assert (second.url, second.token) != (first.url, first.token)
    with second.client() as api:
        run = api.create_flow_run_from_deployment("trivial/d", parameters={"x": 1})
        done = api.watch_flow_run(run["id"], timeout=120)

    assert state_of(done) == "COMPLETED", done["state"]
    assert done["worker_name"] == "w"
    output = worker.output()
    assert "_xsrf" not in output
    assert len(re.findall(r"lost the server", output)) == 1, output
    assert re.search(r"found the server again at .*new token", output), output


@pytest.mark.slow
def test_a_server_killed_with_9_takes_its_embedded_worker_along(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with server.client() as api:
            api.create_work_pool("p", "process")
            wait_for(lambda: api.list_workers("p"), "the embedded worker to serve", timeout=60)
        [worker] = wait_for(
            lambda: [
                p
                for p in psutil.Process(server.process.pid).children()
                if "nbflows.cli.app" in p.cmdline()
            ],
            "the embedded worker process",
            timeout=60,
        )
        server.process.kill()
        server.process.wait()

        # Else it would serve on beside the worker of the next server, under the same name.
        try:
            worker.wait(60)
        except psutil.TimeoutExpired:
            worker.kill()
            pytest.fail("the embedded worker outlived its server by 60 s")
    finally:
        server.stop()


# -- defect 9: states with no way out -----------------------------------------------------------


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without a worker for the REST-level faults (runs stay where a test puts them)."""
    server = start_server(tmp_path_factory.mktemp("quick"), embedded_worker=False)
    try:
        yield server
    finally:
        server.stop()


def pool_with_run(server: Server, pool: str, **deploy: Any) -> str:
    ok(server.http("POST", "work_pools", json={"name": pool, "type": "process", **deploy}), 201)
    d = ok(
        server.http(
            "POST",
            "deployments",
            json={"path": "trivial.ipynb", "name": pool, "work_pool_name": pool},
        ),
        201,
    )
    return str(ok(server.http("POST", f"deployments/{d['id']}/runs", json={}), 201)["id"])


def claim(server: Server, pool: str, worker: str) -> list[dict[str, Any]]:
    return list(ok(server.http("POST", f"work_pools/{pool}/claim", json={"worker": worker})))


def run_state(server: Server, run_id: str) -> dict[str, Any]:
    return dict(ok(server.http("GET", f"flow_runs/{run_id}")))


def wait_state(server: Server, run_id: str, states: set[str], what: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = run_state(server, run_id)
        return run if state_of(run) in states else None

    return wait_for(reached, what, timeout=90)


def test_a_claim_never_followed_by_a_heartbeat_is_handed_back(quick_server: Server) -> None:
    run_id = pool_with_run(quick_server, "ghostly", concurrency_limit=1)
    [claimed] = claim(quick_server, "ghostly", "ghost")  # and never a heartbeat
    assert claimed["flow_run"]["id"] == run_id

    run = wait_state(quick_server, run_id, {"SCHEDULED"}, "the silent claim to be handed back")

    assert "handed back" in run["state"]["message"] and "ghost" in run["state"]["message"]
    assert run["attempt"] == 1 and run["worker_name"] is None
    # The pool's only slot is free again: another worker gets the run.
    [again] = claim(quick_server, "ghostly", "alive")
    assert again["flow_run"]["id"] == run_id and again["fence"] > claimed["fence"]


def test_a_cancelled_run_whose_worker_is_gone_ends_cancelled(quick_server: Server) -> None:
    run_id = pool_with_run(quick_server, "vanished")
    [claimed] = claim(quick_server, "vanished", "gone")
    ok(
        quick_server.http(
            "POST",
            f"flow_runs/{run_id}/set_state",
            json={"type": "RUNNING", "worker": "gone", "fence": claimed["fence"]},
        )
    )
    assert state_of(ok(quick_server.http("POST", f"flow_runs/{run_id}/cancel"))) == "CANCELLING"

    run = wait_state(
        quick_server, run_id, TERMINAL, "the cancelled run of a vanished worker to end"
    )

    assert state_of(run) == "CANCELLED"
    assert "gone" in run["state"]["message"]


@pytest.mark.slow
def test_a_flow_run_whose_kernel_is_killed_crashes(quick_server: Server) -> None:
    km = KernelManager(kernel_name="python3")
    env = {
        **{k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV},
        "NBFLOWS_API_URL": quick_server.api,
        "NBFLOWS_API_TOKEN": quick_server.token,
    }
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("%load_ext nbflows", timeout=60)
        kc.execute("%%flow doomed\nimport time\ntime.sleep(600)")
        with quick_server.client() as api:
            [run] = wait_for(
                lambda: api.list_flow_runs(flow_name="doomed", state="RUNNING"),
                "the %%flow run to be RUNNING",
                timeout=60,
            )
            os.kill(km.provisioner.pid, signal.SIGKILL)  # type: ignore[union-attr]

            ended = wait_for(
                lambda: (r := api.read_flow_run(run["id"]))["state"]["type"] in TERMINAL and r,
                "the run of the killed kernel to end",
                timeout=90,
            )
        assert state_of(ended) == "CRASHED"
        assert "kernel" in ended["state"]["message"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_detector_ends_each_stuck_state_and_spares_the_living(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbflows.extension.lifecycle import scheduler_pass

    now = t.utcnow()
    monkeypatch.setattr(heartbeats, "_started", now - timedelta(hours=1))
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    with database.session() as s:
        pool = t.WorkPool(name="p", type="process", base_job_template={})
        s.add(pool)
        s.flush()
        for name, beat in [("dead", ago(60)), ("alive", now)]:
            s.add(
                t.Worker(
                    work_pool_id=pool.id,
                    name=name,
                    last_heartbeat=beat,
                    online_until=beat + timedelta(seconds=15),
                    heartbeat_interval=5.0,
                )
            )

        def run(name: str, state: str, worker: str | None, since: float, **more: Any) -> None:
            s.add(
                t.FlowRun(
                    id=name,
                    name=name,
                    flow_name="f",
                    kind=more.pop("kind", "deployment"),
                    work_pool_id=pool.id,
                    state_type=state,
                    state_name=state.capitalize(),
                    state_timestamp=ago(since),
                    worker_name=worker,
                    **more,
                )
            )

        run("running-of-dead", "RUNNING", "dead", 100)
        run("pending-of-dead", "PENDING", "dead", 100)
        run("cancelling-of-dead", "CANCELLING", "dead", 100)
        run("pending-of-never-beating", "PENDING", "ghost", 60)
        run("just-claimed-by-ghost", "PENDING", "ghost", 1)
        run("running-of-alive", "RUNNING", "alive", 1000)
        run("cancelling-too-long", "CANCELLING", "alive", heartbeats.CANCELLING_TIMEOUT + 10)
        run("silent-kernel", "RUNNING", None, 100, kind="interactive", heartbeat_deadline=ago(1))
        run("beating-kernel", "RUNNING", None, 100, kind="interactive", heartbeat_deadline=ago(-10))
        run(
            "child-of-silent-kernel",
            "RUNNING",
            None,
            100,
            kind="interactive",
            parent_run_id="silent-kernel",
        )

    with database.session() as s:
        scheduler_pass(s)

    with database.session() as s:
        states = {r.id: r.state_type for r in s.scalars(select(t.FlowRun))}
    assert states == {
        "running-of-dead": "CRASHED",
        "pending-of-dead": "SCHEDULED",  # never started: handed back
        "cancelling-of-dead": "CANCELLED",
        "pending-of-never-beating": "SCHEDULED",
        "just-claimed-by-ghost": "PENDING",
        "running-of-alive": "RUNNING",
        "cancelling-too-long": "CANCELLED",
        "silent-kernel": "CRASHED",
        "beating-kernel": "RUNNING",
        "child-of-silent-kernel": "CRASHED",
    }


def test_a_worker_with_a_short_interval_is_lost_only_after_the_minimum_silence(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 s heartbeat interval does not make 3 s of silence (a loaded machine's hiccup) a crash
    verdict: a worker is lost after its missed beats and never before `MIN_SILENCE`."""
    from nbflows.extension.lifecycle import scheduler_pass
    from nbflows.services.schemas.bodies import HeartbeatRequest

    now = t.utcnow()
    monkeypatch.setattr(heartbeats, "_started", now - timedelta(hours=1))
    with database.session() as s:
        pool = t.WorkPool(name="p", type="process", base_job_template={})
        s.add(pool)
        s.flush()
        s.add(
            t.FlowRun(
                id="r",
                name="r",
                flow_name="f",
                kind="deployment",
                work_pool_id=pool.id,
                state_type="RUNNING",
                state_name="Running",
                state_timestamp=now,
                worker_name="w",
                fence=1,
            )
        )
        s.flush()
        beat = HeartbeatRequest(name="w", heartbeat_interval=1.0, running=["r"], fences={"r": 1})
        heartbeats.heartbeat(s, "p", beat)

    def state_after(seconds: float) -> str:
        monkeypatch.setattr(t, "utcnow", lambda: now + timedelta(seconds=seconds))
        with database.session() as s:
            scheduler_pass(s)
        with database.session() as s:
            return s.get_one(t.FlowRun, "r").state_type

    assert state_after(heartbeats.MISSED_BEATS * 1.0 + 2) == "RUNNING"
    assert state_after(heartbeats.MIN_SILENCE - 1) == "RUNNING"
    assert state_after(heartbeats.MIN_SILENCE + 1) == "CRASHED"


def test_after_a_restart_workers_get_a_grace_before_any_verdict(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbflows.extension.lifecycle import scheduler_pass

    now = t.utcnow()
    monkeypatch.setattr(heartbeats, "_started", now - timedelta(seconds=5))  # just restarted
    with database.session() as s:
        pool = t.WorkPool(name="p", type="process", base_job_template={})
        s.add(pool)
        s.flush()
        beat = now - timedelta(seconds=60)  # silent during the outage
        s.add(
            t.Worker(
                work_pool_id=pool.id,
                name="w",
                last_heartbeat=beat,
                online_until=beat + timedelta(seconds=15),
                heartbeat_interval=5.0,
            )
        )
        s.add(
            t.FlowRun(
                id="r",
                name="r",
                flow_name="f",
                kind="deployment",
                work_pool_id=pool.id,
                state_type="RUNNING",
                state_name="Running",
                worker_name="w",
                state_timestamp=now - timedelta(seconds=100),
            )
        )

    with database.session() as s:
        scheduler_pass(s)
    with database.session() as s:
        assert s.get(t.FlowRun, "r").state_type == "RUNNING"  # type: ignore[union-attr]

    later = now - timedelta(seconds=5 + 3 * 5 + heartbeats.RESTART_GRACE + 1)
    monkeypatch.setattr(heartbeats, "_started", later)  # the grace is over: still silent
    with database.session() as s:
        scheduler_pass(s)
    with database.session() as s:
        assert s.get(t.FlowRun, "r").state_type == "CRASHED"  # type: ignore[union-attr]


# -- exactly once: fencing tokens -----------------------------------------------------------------


def test_reports_need_the_fence_of_the_claim_that_holds_the_run(quick_server: Server) -> None:
    run_id = pool_with_run(quick_server, "fenced")
    [first] = claim(quick_server, "fenced", "w")
    path = f"flow_runs/{run_id}/set_state"
    missing = quick_server.http("POST", path, json={"type": "RUNNING", "worker": "w"})
    assert missing.status_code == 422 and "fence" in missing.json()["message"]
    # The same worker name hands the run back and claims it again (a restarted process, say):
    # the first claim's reports are refused, its notebook too.
    ok(
        quick_server.http(
            "POST", path, json={"type": "SCHEDULED", "worker": "w", "fence": first["fence"]}
        )
    )
    [second] = claim(quick_server, "fenced", "w")
    assert second["fence"] != first["fence"]
    stale = quick_server.http(
        "POST", path, json={"type": "RUNNING", "worker": "w", "fence": first["fence"]}
    )
    assert stale.status_code == 409 and "no longer holds" in stale.json()["message"]
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    refused = quick_server.http(
        "PUT", f"flow_runs/{run_id}/notebook?worker=w&fence={first['fence']}", json=nb
    )
    assert refused.status_code == 409
    beat = ok(
        quick_server.http(
            "POST",
            "work_pools/fenced/workers/heartbeat",
            json={"name": "w", "running": [run_id], "fences": {run_id: first["fence"]}},
        )
    )
    assert beat["cancel"] == [run_id]  # whoever still runs the first claim must stop
    ok(
        quick_server.http(
            "POST", path, json={"type": "RUNNING", "worker": "w", "fence": second["fence"]}
        )
    )


def test_log_lines_sent_twice_are_stored_once(quick_server: Server) -> None:
    run_id = pool_with_run(quick_server, "replayed")
    lines = [{"message": f"line {i}", "fence": 1, "seq": i} for i in range(5)]
    ok(quick_server.http("POST", f"flow_runs/{run_id}/logs", json=lines[:3]), 201)
    # A replay after an outage: the first three again, then the rest.
    ok(quick_server.http("POST", f"flow_runs/{run_id}/logs", json=lines), 201)
    ok(quick_server.http("POST", f"flow_runs/{run_id}/logs", json=lines[3:]), 201)

    assert messages(quick_server, run_id) == [f"line {i}" for i in range(5)]
    assert run_state(quick_server, run_id)["log_count"] == 5


# -- issue 11: a server outage with runs in flight ------------------------------------------------


@pytest.mark.slow
def test_runs_in_flight_survive_a_server_kill_and_a_20_s_outage(
    tmp_path: Path, servers: list[Server], start_worker: Callable[..., Worker]
) -> None:
    server = start_server(tmp_path / "srv", embedded_worker=False)
    servers.append(server)
    write_notebook(server.root / "ticking.ipynb", TICKING)
    with server.client() as api:
        api.create_work_pool("p", "process")
        api.deploy(path="ticking.ipynb", name="d", work_pool_name="p", retries=1)
    workers = [
        start_worker(
            server, "--pool", "p", "--name", f"w{i}", "--limit", "4", "--heartbeat-interval", "1"
        )
        for i in range(2)
    ]
    wait_for(lambda: online(server, "p", {"w0", "w1"}), "2 workers online", timeout=120)
    with server.client() as api:
        run_ids = [api.create_flow_run_from_deployment("ticking/d")["id"] for _ in range(24)]
        wait_for(
            lambda: len(api.list_flow_runs(state="RUNNING", limit=100)) >= 6,
            "runs in flight",
            timeout=120,
        )
        time.sleep(3)  # well into their ticks

    server.process.kill()
    server.process.wait()
    time.sleep(20)
    restart(server)

    with server.client() as api:

        def all_ended() -> list[dict[str, Any]] | None:
            runs = [api.read_flow_run(i) for i in run_ids]
            return runs if all(state_of(r) in TERMINAL for r in runs) else None

        done = wait_for(all_ended, "every run to end", timeout=300)
    executions = Counter(p.name.split(".")[0] for p in (server.root / "markers").iterdir())
    assert Counter(state_of(r) for r in done) == {"COMPLETED": 24}, [
        (r["id"], r["state"]) for r in done if state_of(r) != "COMPLETED"
    ]
    assert all(r["attempt"] == 1 and r["has_notebook"] for r in done)
    assert {run_id: executions[run_id] for run_id in run_ids} == dict.fromkeys(run_ids, 1)
    expected = [f"tick {i}" for i in range(8)] + ["done"]
    for run_id in run_ids:
        assert messages(server, run_id, "stdout") == expected, run_id
    for worker in workers:
        assert worker.output().count("lost the server") == 1, worker.output()
