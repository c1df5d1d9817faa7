"""Dask pools against a real cluster: `dask scheduler` and two `dask worker` processes (each in
its own working directory, TMPDIR and, as root, network namespace), a real server and a standalone
`nbflows worker start --type dask`. Nothing is shared through the file system: the notebook and
the project files travel with each task.

The tests share one cluster, server and worker (module fixtures, one xdist group); each uses pools
of its own.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflows.workers.job_templates import default_base_job_template

from .dask_support import DaskCluster
from .servers import DATA, Server, free_port, start_server
from .test_worker import (
    TERMINAL,
    Worker,
    create_run,
    deploy,
    gone,
    kernel_pid,
    messages,
    state_of,
    wait_state,
)
from .waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]

_RUNNING_ON = re.compile(r"^running on the Dask worker (\S+)$")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """The scheduler, `plain` (no resources) and `gpu` (`--resources GPU=1`), each worker in a
    network namespace of its own when the machine allows (root), else on the loopback."""
    dask = DaskCluster(tmp_path_factory.mktemp("dask"), isolated=True).start()
    if dask.not_isolated:
        print(f"Dask workers share the machine's network: {dask.not_isolated}")
    try:
        dask.add_worker("plain")
        dask.add_worker("gpu", "--resources", "GPU=1")
        dask.wait_for_workers(2)
        yield dask
    finally:
        dask.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("server"), embedded_worker=False)
    for name in ("worker_sleep.ipynb",):
        (server.root / name).write_bytes((DATA / name).read_bytes())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def worker(
    srv: Server, cluster: DaskCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    out = tmp_path_factory.mktemp("worker") / "worker.out"
    process = Worker(srv, out, "--type", "dask", "--limit", "8", "--heartbeat-interval", "1")
    try:
        yield process
    finally:
        process.stop()
        print(f"--- dask worker output:\n{process.output()}")


def addresses(cluster: DaskCluster) -> dict[str, str]:
    """Dask worker name → address."""
    from distributed import Client

    with Client(cluster.address, timeout=30, set_as_default=False) as client:
        workers = client.scheduler_info()["workers"]
    return {str(info["name"]): address for address, info in workers.items()}


def dask_pool(srv: Server, name: str, scheduler: str, **defaults: Any) -> None:
    """A dask pool whose variables default to `scheduler` and `defaults`."""
    template = default_base_job_template("dask")
    properties = template["variables"]["properties"]
    for key, value in {"scheduler_address": scheduler, **defaults}.items():
        properties[key]["default"] = value
    with srv.client() as api:
        api.create_work_pool(name, "dask", base_job_template=template)


def ran_on(srv: Server, run_id: str) -> list[str]:
    """The Dask workers the run's attempts were granted to, from its log."""
    found = [_RUNNING_ON.match(m) for m in messages(srv, run_id, "worker")]
    return [m.group(1) for m in found if m]


def test_a_notebook_runs_on_dask_with_logs_children_project_files_and_its_notebook(
    srv: Server, cluster: DaskCluster, worker: Worker
) -> None:
    # As the README says: the default template with the scheduler pinned, a pool, a deployment.
    template = srv.root / "dask.json"
    made = srv.cli(
        "work-pool", "get-default-base-job-template", "--type", "dask", "--file", str(template)
    )
    assert made.returncode == 0, made.stderr
    edited = json.loads(template.read_text())
    edited["job_configuration"]["scheduler_address"] = cluster.address  # pinned by the admin
    del edited["variables"]["properties"]["scheduler_address"]
    template.write_text(json.dumps(edited))
    for command in (
        ["work-pool", "create", "dask-a", "--type", "dask", "--base-job-template", str(template)],
        ["deploy", "repo_info.ipynb", "--name", "on-dask", "--pool", "dask-a"],
    ):
        done = srv.cli(*command)
        assert done.returncode == 0, done.stdout + done.stderr

    watched = srv.cli(
        "deployment",
        "run",
        "repo_info/on-dask",
        "--param",
        "repo_name=ipython/ipython",
        "--timeout",
        "240",
    )

    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "Stars 🌠 : 16200" in watched.stdout
    with srv.client() as api:
        (run,) = api.list_flow_runs(work_pool_name="dask-a", flow_name="repo_info")
    run_id = run["id"]
    assert state_of(run) == "COMPLETED", run["state"]
    # The notebook read data/repos.csv: the project files travelled with the task.
    assert "Stars 🌠 : 16200" in messages(srv, run_id, "stdout")
    assert len(ran_on(srv, run_id)) == 1
    assert ran_on(srv, run_id)[0] in addresses(cluster).values()
    with srv.client() as api:
        children = api.list_flow_runs(parent_run_id=run_id)
        notebook = api.read_flow_run_notebook(run_id)
    assert sorted((c["flow_name"], state_of(c)) for c in children) == [
        ("get_repo_info", "COMPLETED"),
        ("summarize_repos", "COMPLETED"),
    ]
    by_name = {c["flow_name"]: c["id"] for c in children}
    assert "Stars 🌠 : 16200" in messages(srv, by_name["get_repo_info"])
    outputs = [
        "".join(o.get("text", "")) for cell in notebook["cells"] for o in cell.get("outputs", [])
    ]
    assert any("5 repositories, 50900 stars" in text for text in outputs)
    # The worker's machine has no trace of the run: it ran in the Dask worker's own folder.
    for name in ("plain", "gpu"):
        assert not list(Path(cluster.folder, name, "tmp").glob(f"nbflows-{run_id}-*"))


@pytest.mark.timeout(900)
def test_forty_runs_spread_over_both_dask_workers_each_executed_once(
    srv: Server, cluster: DaskCluster, worker: Worker
) -> None:
    dask_pool(srv, "dask-many", cluster.address)
    deploy(srv, "trivial.ipynb", "many", "dask-many")

    run_ids = [create_run(srv, "trivial/many") for _ in range(40)]
    runs = [wait_state(srv, run_id, TERMINAL, timeout=600) for run_id in run_ids]

    failed = [r["state"] for r in runs if state_of(r) != "COMPLETED"]
    assert Counter(state_of(r) for r in runs) == {"COMPLETED": 40}, failed[:3]
    placements = [ran_on(srv, run_id) for run_id in run_ids]
    assert all(len(p) == 1 for p in placements), placements
    assert set(addresses(cluster).values()) == {p[0] for p in placements}
    assert all(messages(srv, run_id, "stdout") == ["2"] for run_id in run_ids)


def test_dask_resources_decide_where_runs_go(
    srv: Server, cluster: DaskCluster, worker: Worker
) -> None:
    dask_pool(srv, "dask-gpu", cluster.address)
    deploy(srv, "trivial.ipynb", "gpu", "dask-gpu", job_variables={"resources": {"GPU": 1}})

    run_ids = [create_run(srv, "trivial/gpu") for _ in range(6)]
    runs = [wait_state(srv, run_id, TERMINAL, timeout=300) for run_id in run_ids]

    assert Counter(state_of(r) for r in runs) == {"COMPLETED": 6}
    gpu = addresses(cluster)["gpu"]
    assert {address for run_id in run_ids for address in ran_on(srv, run_id)} == {gpu}


def test_resources_that_are_not_numbers_are_refused_at_deploy(
    srv: Server, cluster: DaskCluster
) -> None:
    dask_pool(srv, "dask-bad", cluster.address)
    response = srv.http(
        "POST",
        "deployments",
        json={
            "path": "trivial.ipynb",
            "name": "bad",
            "work_pool_name": "dask-bad",
            "job_variables": {"resources": {"GPU": "one"}},
        },
    )
    assert response.status_code == 422, response.text
    assert "resources" in response.text


def test_cancel_stops_the_task_and_kills_its_kernel_on_the_dask_worker(
    srv: Server, cluster: DaskCluster, worker: Worker
) -> None:
    dask_pool(srv, "dask-cancel", cluster.address)
    deploy(srv, "worker_sleep.ipynb", "cancel", "dask-cancel")
    run_id = create_run(srv, "worker_sleep/cancel")
    pid = kernel_pid(srv, run_id)

    with srv.client() as api:
        api.cancel_flow_run(run_id)
    run = wait_state(srv, run_id, TERMINAL)

    assert state_of(run) == "CANCELLED", run["state"]
    wait_for(lambda: gone(pid), f"kernel {pid} to be killed", timeout=60)
    with srv.client() as api:
        notebook = api.read_flow_run_notebook(run_id)
    assert any(
        o.get("ename") == "CancelledError" for c in notebook["cells"] for o in c.get("outputs", [])
    )


def test_a_dask_worker_killed_mid_run_crashes_the_attempt_which_never_runs_twice(
    srv: Server, cluster: DaskCluster, worker: Worker
) -> None:
    dask_pool(srv, "dask-kill", cluster.address)
    deploy(srv, "worker_sleep.ipynb", "kill", "dask-kill", retries=1, retry_delay=0)
    run_id = create_run(srv, "worker_sleep/kill")
    first_pid = kernel_pid(srv, run_id)
    first = ran_on(srv, run_id)[0]
    victim = next(w for w in cluster.workers if addresses(cluster).get(w.name) == first)

    victim.kill_worker_only()
    try:
        # Attempt 1 CRASHED; its retry (attempt 2) runs on the Dask worker left.
        def second_attempt_printed() -> bool:
            with srv.client() as api:
                attempt = api.read_flow_run(run_id).get("attempt")
            return attempt == 2 and len(kernel_pids(srv, run_id)) == 2

        wait_for(second_attempt_printed, "attempt 2 to print its kernel pid", timeout=180)
        log = messages(srv, run_id)
        assert any("died" in m and first in m for m in log), log
        placements = ran_on(srv, run_id)
        assert placements[0] == first and placements[1] != first, placements
        # Dask rescheduled attempt 1 on the survivor too; it was refused there (not even its
        # folder was made): the survivor holds the folder of attempt 2 only.
        survivor = next(w for w in cluster.workers if w is not victim)
        assert len(list((survivor.folder / "tmp").glob(f"nbflows-{run_id}-*-run-*"))) == 1
        with srv.client() as api:
            api.cancel_flow_run(run_id)
        assert state_of(wait_state(srv, run_id, TERMINAL)) == "CANCELLED"
        # Never executed twice: one kernel per attempt, however Dask rescheduled attempt 1.
        assert len(kernel_pids(srv, run_id)) == 2
        assert len(ran_on(srv, run_id)) == 2
    finally:
        if not gone(first_pid):  # the dead worker's kernel, orphaned as on a real machine
            os.kill(first_pid, signal.SIGKILL)
        resources = ["--resources", "GPU=1"] if victim.name == "gpu" else []
        cluster.workers.remove(victim)
        cluster.add_worker(victim.name, *resources)
        cluster.wait_for_workers(2)


def kernel_pids(srv: Server, run_id: str) -> list[str]:
    return [m for m in messages(srv, run_id, "stdout") if m.startswith("kernel pid ")]


def test_an_unreachable_scheduler_fails_the_run_and_says_so_on_the_pool(
    srv: Server, worker: Worker
) -> None:
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    dask_pool(srv, "dask-nowhere", nowhere, connect_timeout=2)
    deploy(srv, "trivial.ipynb", "nowhere", "dask-nowhere")

    run = wait_state(srv, create_run(srv, "trivial/nowhere"), TERMINAL, timeout=120)

    assert state_of(run) == "FAILED"
    assert f"cannot reach the Dask scheduler at {nowhere}" in run["state"]["message"]

    def pool_says_why() -> dict[str, Any] | None:
        with srv.client() as api:
            pool = api.read_work_pool("dask-nowhere")
        return pool if pool["status"] == "NOT_READY" else None

    pool = wait_for(pool_says_why, "the pool to show the problem", timeout=30)
    assert nowhere in pool["status_reason"]


def test_a_second_execution_of_a_granted_attempt_refuses_to_run(cluster: DaskCluster) -> None:
    """The fence itself, as when Dask reschedules a task whose worker died: two executions of
    one attempt, the first granted by its owner (here the test plays the nbflows worker)."""
    import nbformat
    from distributed import Client, Variable

    from nbflows.workers.dask.task import run_attempt

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('ran')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python"}
    spec = {
        "key": "fence-test",
        "topic": "nbflows-fence-test",
        "grant": "fence-test-grant",
        "cancel": "fence-test-cancel",
        "grant_timeout": 60,
    }
    starts: list[dict[str, Any]] = []
    with Client(cluster.address, timeout=30, set_as_default=False) as client:
        client.subscribe_topic(spec["topic"], lambda event: starts.append(event[1]))
        grant = Variable(spec["grant"], client=client)
        first = client.submit(run_attempt, spec, dict(notebook), None, key="fence-1", pure=False)
        wait_for(lambda: any(m.get("kind") == "start" for m in starts), "the first start")
        grant.set(next(m["token"] for m in starts if m.get("kind") == "start"))
        second = client.submit(run_attempt, spec, dict(notebook), None, key="fence-2", pure=False)

        assert first.result(timeout=240)["status"] == "completed"
        assert second.result(timeout=240)["status"] == "refused"
        grant.delete()
        client.unsubscribe_topic(spec["topic"])
    lines = [i[3] for m in starts if m.get("kind") == "batch" for i in m["items"]]
    assert lines.count("ran") == 1


def test_a_project_archive_cannot_write_outside_the_run_folder(tmp_path: Path) -> None:
    import io
    import zipfile

    from nbflows.workers.dask.task import unpack_project

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/ok.csv", "a,b\n")
        archive.writestr("../escaped.txt", "no")
    with pytest.raises(ValueError, match="outside"):
        unpack_project(buffer.getvalue(), str(tmp_path / "run"), "")
    assert not (tmp_path / "escaped.txt").exists()
    with pytest.raises(ValueError, match="outside"):
        unpack_project(None, str(tmp_path / "run"), "../elsewhere")


def test_files_a_run_writes_under_its_output_folder_on_dask_are_its_artifacts(
    srv: Server, cluster: DaskCluster, worker: Worker, tmp_path: Path
) -> None:
    (srv.root / "artifacts.ipynb").write_bytes((DATA / "artifacts.ipynb").read_bytes())
    dask_pool(srv, "dask-files", cluster.address)
    deploy(srv, "artifacts.ipynb", "files", "dask-files")

    run_id = create_run(srv, "artifacts/files", rows=3)
    run = wait_state(srv, run_id, TERMINAL, timeout=240)
    listed = srv.cli("flow-run", "artifacts", run_id)
    fetched = srv.cli("flow-run", "artifact", run_id, "report.csv", "-o", str(tmp_path / "r.csv"))

    assert state_of(run) == "COMPLETED", (run["state"], messages(srv, run_id))
    assert listed.returncode == 0, listed.stderr
    assert "report.csv" in listed.stdout and "plots/fig.bin" in listed.stdout
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "r.csv").read_text() == "n,square\n0,0\n1,1\n2,4\n"
    with srv.client() as api:
        fig = api.read_flow_run(run_id).read_artifact("plots/fig.bin")
    assert fig == bytes(range(256)) * 40
    assert "kept 2 artifacts of the run" in messages(srv, run_id)
    # Neither the Dask workers nor the nbflows worker's machine keep the run's files (folders
    # of other tests' runs, such as one whose Dask worker was killed, may remain).
    for name in ("plain", "gpu"):
        assert not list(Path(cluster.folder, name, "tmp").glob(f"nbflows-{run_id}-*"))
