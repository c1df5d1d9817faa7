"""Workers against a real server, real kernels and real papermill: the embedded worker of the
`server` fixture, and standalone `nbflows worker start` processes next to a `bare_server`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from nbflows.errors import InvalidInput
from nbflows.services import heartbeats
from nbflows.store import tables as t
from nbflows.store.db import Database
from nbflows.widgets.pool_picker import pool_info_html, pool_status
from nbflows.workers import get_worker_class
from nbflows.workers.process import ProcessWorker
from nbflows.workers.worker_state import default_worker_name

from .servers import DATA, Server, start_server
from .waiting import wait_for

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# -- helpers ------------------------------------------------------------------------------------


def state_of(run: dict[str, Any]) -> str:
    return str(run["state"]["type"])


def wait_state(
    server: Server, run_id: str, states: set[str], timeout: float = 120
) -> dict[str, Any]:
    with server.client() as api:

        def reached() -> dict[str, Any] | None:
            run = api.read_flow_run(run_id)
            return run if state_of(run) in states else None

        return wait_for(reached, f"run {run_id} to be {' or '.join(sorted(states))}", timeout)


def log_lines(server: Server, run_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    after = 0
    with server.client() as api:
        while True:
            page = api.read_logs(run_id, after=after, limit=1000)
            lines += page["items"]
            after = page["next_after"]
            if len(page["items"]) < 1000:
                return lines


def messages(server: Server, run_id: str, source: str | None = None) -> list[str]:
    return [x["message"] for x in log_lines(server, run_id) if source in (None, x["source"])]


def kernel_pid(server: Server, run_id: str) -> int:
    """The pid the sleeping notebook printed, once it reached the server (while it runs)."""

    def printed() -> int | None:
        with server.client() as api:
            run = api.read_flow_run(run_id)  # before the logs: a finished run has all its lines
        for message in messages(server, run_id, "stdout"):
            if message.startswith("kernel pid "):
                return int(message.split()[-1])
        if state_of(run) in TERMINAL:
            pytest.fail(f"run {run_id} ended without printing its pid: {run['state']}")
        return None

    try:
        return wait_for(printed, f"the kernel pid in the log of run {run_id}", timeout=120)
    except pytest.fail.Exception:
        with server.client() as api:
            run = api.read_flow_run(run_id)
        pytest.fail(f"run {run_id} printed no kernel pid in time; it is {run['state']}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def copy_notebooks(server: Server, *names: str) -> None:
    for name in names:
        shutil.copy(DATA / name, server.root / name)


def deploy(server: Server, path: str, name: str, pool: str, **fields: Any) -> dict[str, Any]:
    with server.client() as api:
        return api.deploy(path=path, name=name, work_pool_name=pool, **fields)


def create_run(server: Server, ref: str, **parameters: Any) -> str:
    with server.client() as api:
        return str(api.create_flow_run_from_deployment(ref, parameters=parameters or None)["id"])


class Worker:
    """A standalone `nbflows worker start` process; its output goes to a file."""

    def __init__(self, server: Server, out: Path, *args: str) -> None:
        self.out = out
        env = {
            **os.environ,
            **server.env,
            "NBFLOWS_API_URL": server.api,
            "NBFLOWS_API_TOKEN": server.token,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nbflows.cli.app", "worker", "start", *args],
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=server.root,
        )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def started_runs(self) -> list[str]:
        return re.findall(r"run \S+ \((\w+)\).* started", self.output())

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not exit in {timeout:g} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(server: Server, *args: str) -> Worker:
        worker = Worker(server, tmp_path / f"worker-{len(started)}.out", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        print(f"--- output of worker {worker.out.name}:\n{worker.output()}")  # shown on failure


def wait_online(server: Server, pool: str, count: int) -> None:
    with server.client() as api:
        wait_for(
            lambda: sum(w["status"] == "ONLINE" for w in api.list_workers(pool)) >= count,
            f"{count} worker(s) online in pool {pool}",
            timeout=120,
        )


# -- worker types -------------------------------------------------------------------------------


def test_worker_types_come_from_entry_points() -> None:
    assert get_worker_class("process") is ProcessWorker
    with pytest.raises(InvalidInput, match=r"no worker for work pool type 'kubernetes'.*process"):
        get_worker_class("kubernetes")


def test_default_worker_names_are_the_same_after_a_restart() -> None:
    name = default_worker_name("process")
    assert name == default_worker_name("process") and str(os.getpid()) not in name


def test_dead_worker_rows_expire_and_cost_the_scheduler_pass_nothing(tmp_path: Path) -> None:
    from nbflows.extension.lifecycle import scheduler_pass

    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    long_ago = t.utcnow() - timedelta(seconds=heartbeats.OFFLINE_WORKER_TTL + 60)
    recently = t.utcnow() - timedelta(minutes=5)
    with db.session() as s:
        pool = t.WorkPool(name="p", type="process", base_job_template={})
        s.add(pool)
        s.flush()
        for name, beat in [("gone-long-ago", long_ago), ("gone-recently", recently)]:
            s.add(
                t.Worker(
                    work_pool_id=pool.id,
                    name=name,
                    last_heartbeat=beat,
                    online_until=beat + timedelta(seconds=15),
                )
            )
    with db.session() as s:
        scheduler_pass(s)
    with db.session() as s:
        names = set(s.scalars(select(t.Worker.name)))
    db.dispose()
    assert names == {"gone-recently"}  # shown OFFLINE for a while, then deleted


# -- the embedded worker (server fixture) -------------------------------------------------------


def test_cli_journey_runs_a_whole_notebook_deployment(server: Server) -> None:
    created = server.cli("work-pool", "create", "my-pool", "--type", "process")
    assert created.returncode == 0, created.stderr
    deployed = server.cli("deploy", "trivial.ipynb", "--name", "d", "--pool", "my-pool")
    assert deployed.returncode == 0, deployed.stderr

    watched = server.cli("deployment", "run", "trivial/d", "--param", "x=41", "--watch")

    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert re.search(r"\|\s*INFO\s*\|\s*42$", watched.stdout, re.MULTILINE), watched.stdout
    assert "Completed" in watched.stdout
    run_id = re.search(r"UUID: (\w+)", watched.stdout).group(1)  # type: ignore[union-attr]
    logs = server.cli("flow-run", "logs", run_id, "-o", "json")
    assert logs.returncode == 0, logs.stderr
    assert "42" in [line["message"] for line in json.loads(logs.stdout)]
    notebook = server.http("GET", f"flow_runs/{run_id}/notebook").json()
    printed = [
        "".join(out.get("text", ""))
        for cell in notebook["cells"]
        for out in cell.get("outputs", [])
        if out["output_type"] == "stream"
    ]
    assert printed == ["42\n"]
    assert notebook["metadata"]["papermill"]["parameters"] == {"x": 41}


def test_the_tutorial_cell_deployment_runs_in_the_notebook_folder(server: Server) -> None:
    server.cli("work-pool", "create", "my-pool", "--type", "process")
    deployed = server.cli(
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "my-first-deployment",
        "--pool",
        "my-pool",
    )
    assert deployed.returncode == 0, deployed.stderr

    watched = server.cli(
        "deployment",
        "run",
        "get_repo_info/my-first-deployment",
        "--param",
        "repo_name=nteract/papermill",
        "--watch",
    )

    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "Stars 🌠 : 5900" in watched.stdout  # read from data/repos.csv, a relative path
    run_id = re.search(r"UUID: (\w+)", watched.stdout).group(1)  # type: ignore[union-attr]
    with server.client() as api:
        assert api.list_flow_runs(parent_run_id=run_id) == []  # the flow cell *is* the run


def test_output_lines_arrive_in_order_with_the_run_context(server: Server) -> None:
    copy_notebooks(server, "worker_lines.ipynb")
    with server.client() as api:
        api.create_work_pool("lines", "process")
    deploy(server, "worker_lines.ipynb", "d", "lines")
    run_id = create_run(server, "worker_lines/d", count=1500)

    run = wait_state(server, run_id, TERMINAL)

    assert state_of(run) == "COMPLETED", run["state"]
    printed = messages(server, run_id, "stdout")
    assert printed[0] == f"{run_id} worker_lines notebook"
    assert printed[1:] == [f"line {i}" for i in range(1500)]
    cells = {x["cell_index"] for x in log_lines(server, run_id) if x["source"] == "stdout"}
    assert cells == {2}  # after the parameters cell and papermill's injected one


def test_a_failing_cell_fails_the_run_and_says_where(server: Server) -> None:
    copy_notebooks(server, "worker_fail.ipynb")
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "worker_fail.ipynb", "d", "p")
    run_id = create_run(server, "worker_fail/d", message="kaboom")

    run = wait_state(server, run_id, TERMINAL)

    assert state_of(run) == "FAILED"
    message = run["state"]["message"]
    assert "cell 3" in message and "ValueError" in message and "kaboom" in message, message
    errors = messages(server, run_id, "error")
    assert any("Traceback" in x or "----> " in x for x in errors), errors
    assert any(x.startswith("ValueError: kaboom") for x in errors), errors
    assert "before the failure" in messages(server, run_id, "stdout")
    assert "never printed" not in messages(server, run_id)
    notebook = server.http("GET", f"flow_runs/{run_id}/notebook").json()
    raised = [
        out
        for cell in notebook["cells"]
        for out in cell.get("outputs", [])
        if out["output_type"] == "error"
    ]
    assert [(x["ename"], x["evalue"]) for x in raised] == [("ValueError", "kaboom")]
    assert any(
        "papermill-error-cell-tag" in cell["metadata"].get("tags", []) for cell in notebook["cells"]
    )


def test_cancelling_a_running_run_kills_its_kernel(server: Server) -> None:
    copy_notebooks(server, "worker_sleep.ipynb")
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "worker_sleep.ipynb", "d", "p")
    run_id = create_run(server, "worker_sleep/d")
    pid = kernel_pid(server, run_id)
    assert state_of(wait_state(server, run_id, {"RUNNING"})) == "RUNNING"

    cancelled = server.cli("flow-run", "cancel", run_id)

    assert cancelled.returncode == 0, cancelled.stderr
    run = wait_state(server, run_id, TERMINAL)
    assert state_of(run) == "CANCELLED", run["state"]
    wait_for(lambda: gone(pid), f"kernel {pid} to be gone", timeout=120)
    notebook = server.http("GET", f"flow_runs/{run_id}/notebook").json()
    outputs = [out for cell in notebook["cells"] for out in cell.get("outputs", [])]
    assert [x.get("text") for x in outputs if x["output_type"] == "stream"] == [
        f"kernel pid {pid}\n"
    ]
    assert "CancelledError" in [x.get("ename") for x in outputs if x["output_type"] == "error"]


def test_a_kernel_that_dies_crashes_the_run(server: Server) -> None:
    copy_notebooks(server, "worker_die.ipynb")
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "worker_die.ipynb", "d", "p")
    run_id = create_run(server, "worker_die/d")

    run = wait_state(server, run_id, TERMINAL)

    assert state_of(run) == "CRASHED", run["state"]
    assert "kernel died" in run["state"]["message"] and "cell 1" in run["state"]["message"]
    assert "still alive" not in messages(server, run_id)
    assert server.http("GET", f"flow_runs/{run_id}/notebook").status_code == 200


def test_a_failed_attempt_is_retried_and_completes(server: Server) -> None:
    copy_notebooks(server, "worker_retry.ipynb")
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "worker_retry.ipynb", "d", "p", retries=1)
    run_id = create_run(server, "worker_retry/d")

    run = wait_state(server, run_id, TERMINAL)

    assert state_of(run) == "COMPLETED", run["state"]
    assert run["attempt"] == 2
    assert (server.root / "retry-marker").read_text() == "failed once"
    lines = messages(server, run_id)
    assert any("first attempt fails on purpose" in x for x in lines), lines
    assert "second attempt succeeds" in lines


def test_flow_cells_of_a_notebook_run_become_child_runs(server: Server) -> None:
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "repo_info.ipynb", "whole", "p")
    run_id = create_run(server, "repo_info/whole", repo_name="ipython/ipython")

    run = wait_state(server, run_id, TERMINAL)

    assert state_of(run) == "COMPLETED", run["state"]
    with server.client() as api:
        children = api.list_flow_runs(parent_run_id=run_id)
    by_name = {c["flow_name"]: c for c in children}
    assert sorted((c["flow_name"], state_of(c)) for c in children) == [
        ("get_repo_info", "COMPLETED"),
        ("summarize_repos", "COMPLETED"),
    ]
    child_lines = messages(server, by_name["get_repo_info"]["id"])
    assert "Stars 🌠 : 16200" in child_lines
    assert "5 repositories, 50900 stars, 13780 forks" in messages(
        server, by_name["summarize_repos"]["id"]
    )
    assert "Stars 🌠 : 16200" in messages(server, run_id, "stdout")


# -- standalone workers (bare_server) -----------------------------------------------------------


@pytest.mark.slow
def test_a_pool_type_that_cannot_be_served_stops_no_other_and_says_why(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        extra_args=[
            "--NBFlowsExtension.embedded_worker_types=process",
            "--NBFlowsExtension.embedded_worker_types=docker",
        ],
        env={"DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"},
    )
    try:
        with server.client() as api:
            api.create_work_pool("procs", "process")
            api.create_work_pool("boxes", "docker")
            deploy(server, "trivial.ipynb", "d", "procs")

            run = api.create_flow_run_from_deployment("trivial/d", parameters={"x": 1})
            done = api.watch_flow_run(run["id"], timeout=120)
            assert state_of(done) == "COMPLETED", done["state"]

            boxes = wait_for(
                lambda: (p := api.read_work_pool("boxes"))["status_reason"] and p,
                "the docker pool to say why it is not served",
                timeout=60,
            )
        assert boxes["status"] == "NOT_READY" and boxes["workers_online"] == 0
        assert "Docker engine" in boxes["status_reason"]
        listed = server.cli("work-pool", "ls")
        assert "Docker engine" in listed.stdout, listed.stdout
        inspected = server.cli("work-pool", "inspect", "boxes")
        assert "Docker engine" in inspected.stdout, inspected.stdout
        page = httpx.get(
            f"{server.url}nbflows/pools", headers={"Authorization": f"token {server.token}"}
        )
        assert "not served" in page.text and "Docker engine" in page.text
        assert pool_status(boxes)[0] == "not served"
        assert "Docker engine" in pool_info_html(boxes)
        # One line in the server log says so, not one per attempt.
        assert server.log().count("no Docker engine reachable") == 1, server.log()
    finally:
        server.stop()


def test_an_unknown_pool_is_a_clear_error(bare_server: Server) -> None:
    result = bare_server.cli("worker", "start", "--pool", "nope")

    assert result.returncode == 1
    assert "no work pool named 'nope'" in result.stderr


@pytest.mark.slow
def test_two_workers_execute_every_run_exactly_once(
    bare_server: Server, start_worker: Callable[..., Worker]
) -> None:
    with bare_server.client() as api:
        api.create_work_pool("p", "process")
    deploy(bare_server, "trivial.ipynb", "d", "p")
    workers = [
        start_worker(bare_server, "--pool", "p", "--limit", "3", "--name", f"w{i}")
        for i in range(2)
    ]
    wait_online(bare_server, "p", 2)

    run_ids = {create_run(bare_server, "trivial/d", x=i): i for i in range(50)}

    with bare_server.client() as api:
        done = wait_for(
            lambda: (
                runs
                if len(runs := api.list_flow_runs(state=list(TERMINAL), limit=1000)) == 50
                else None
            ),
            "50 finished runs",
            timeout=600,
        )
    assert Counter(state_of(r) for r in done) == {"COMPLETED": 50}
    assert all(r["attempt"] == 1 for r in done)
    assert {r["worker_name"] for r in done} == {"w0", "w1"}
    for run_id, x in run_ids.items():
        assert messages(bare_server, run_id, "stdout") == [str(x + 1)]
    started = Counter(run for w in workers for run in w.started_runs())
    assert set(started) == set(run_ids)
    assert max(started.values()) == 1


@pytest.mark.slow
def test_the_runs_of_a_killed_worker_crash(
    bare_server: Server, start_worker: Callable[..., Worker]
) -> None:
    copy_notebooks(bare_server, "worker_sleep.ipynb")
    with bare_server.client() as api:
        api.create_work_pool("p", "process")
    deploy(bare_server, "worker_sleep.ipynb", "d", "p")
    worker = start_worker(bare_server, "--pool", "p", "--heartbeat-interval", "1")
    run_id = create_run(bare_server, "worker_sleep/d")
    pid = kernel_pid(bare_server, run_id)
    try:
        worker.process.send_signal(signal.SIGKILL)
        worker.wait()

        run = wait_state(bare_server, run_id, TERMINAL, timeout=60)

        assert state_of(run) == "CRASHED"
        assert "stopped heartbeating" in run["state"]["message"]
        # A forked kernel dies with its template, which dies with the worker (PDEATHSIG).
        wait_for(lambda: gone(pid), "the killed worker's kernel to die", timeout=30)
    finally:
        if not gone(pid):  # the orphaned kernel: nobody else will end it
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_hands_back_what_outlives_the_grace_and_exits_0(
    bare_server: Server, start_worker: Callable[..., Worker]
) -> None:
    copy_notebooks(bare_server, "worker_sleep.ipynb")
    with bare_server.client() as api:
        api.create_work_pool("p", "process")
    deploy(bare_server, "worker_sleep.ipynb", "d", "p", retries=0)
    worker = start_worker(bare_server, "--pool", "p", "--grace", "1")
    run_id = create_run(bare_server, "worker_sleep/d")
    cancelled = create_run(bare_server, "worker_sleep/d")
    pid = kernel_pid(bare_server, run_id)
    kernel_pid(bare_server, cancelled)
    with bare_server.client() as api:
        api.cancel_flow_run(cancelled)  # a user's cancellation stays one

        worker.process.send_signal(signal.SIGTERM)

        assert worker.wait() == 0, worker.output()
        run = api.read_flow_run(run_id)
        assert state_of(api.read_flow_run(cancelled)) == "CANCELLED"
    # Scheduled again for any worker, the attempt not counted (no retries were allowed).
    assert state_of(run) == "SCHEDULED", run["state"]
    assert run["attempt"] == 1 and run["worker_name"] is None
    said = messages(bare_server, run_id, "worker")[-1]  # the state may be Late by now
    assert "handed back" in said and "SIGTERM" in said
    assert gone(pid)


@pytest.mark.slow
def test_sigterm_lets_a_short_run_finish_within_the_grace(
    bare_server: Server, start_worker: Callable[..., Worker]
) -> None:
    copy_notebooks(bare_server, "worker_sleep.ipynb")
    with bare_server.client() as api:
        api.create_work_pool("p", "process")
    deploy(bare_server, "worker_sleep.ipynb", "d", "p")
    worker = start_worker(bare_server, "--pool", "p", "--grace", "60")
    run_id = create_run(bare_server, "worker_sleep/d", seconds=2)
    kernel_pid(bare_server, run_id)

    worker.process.send_signal(signal.SIGTERM)
    later = create_run(bare_server, "worker_sleep/d", seconds=2)

    assert worker.wait() == 0, worker.output()
    with bare_server.client() as api:
        assert state_of(api.read_flow_run(run_id)) == "COMPLETED"
        assert state_of(api.read_flow_run(later)) == "SCHEDULED"  # never claimed, or handed back
