"""Docker work pools end to end: deploying with an image (CLI and kernel), then runs in containers.

A real Jupyter server whose embedded worker serves process and docker pools, the real `nbflows`
CLI in subprocesses, a real Docker engine and real images built on the local base image
(`NBFLOWS_TEST_BASE_IMAGE`, else `.ci/base-image.sh`'s). Without an engine the tests skip, except
under CI=true where they fail. The tutorial image is built once for the module (its project gets a
file with a fresh id, so its project layers really build; the layers below come from the engine's
cache when it has them) and every test reuses it.

The server's root holds one folder per project: `tutorial/` (the seed tutorial's notebook and its
data: its build context) and `cases/` (the notebooks of the other tests), so that no test changes
another's build context.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest

from nbflows.packaging.build import IMAGE_WHEEL_ENV
from nbflows.packaging.nbflows_wheel import nbflows_package
from nbflows.workers.container_ownership import (
    LABEL_ATTEMPT,
    LABEL_DEPLOYMENT,
    LABEL_FLOW_RUN,
    LABEL_KEEP,
    LABEL_WORK_POOL,
    LABEL_WORK_POOL_ID,
    LABEL_WORKER,
    LABEL_WORKER_PROCESS,
    REAP_INTERVAL,
)

from .docker_support import docker_client, local_base_image, remove_image
from .servers import DATA, NOTEBOOKS, Server, start_server
from .waiting import wait_for

# One worker builds the module's images and starts its server once (not once per xdist worker).
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker-pool")]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: Image names this module builds, unique to the run (so that concurrent runs do not remove each
#: other's images); all removed at the end, their parent layers kept as the engine's cache.
_RUN = uuid.uuid4().hex[:8]
TUTORIAL_IMAGE = f"nbflows-test/repo-info-{_RUN}"
CASES_IMAGE = f"nbflows-test/cases-{_RUN}"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = docker_client()
    yield client
    for name in (TUTORIAL_IMAGE, CASES_IMAGE):
        for image in client.images.list(name=name):
            for reference in image.tags:
                remove_image(client, reference)


@pytest.fixture(scope="module")
def base_image(engine: Any) -> str:
    configured = os.environ.get("NBFLOWS_TEST_BASE_IMAGE", "").strip()
    return local_base_image(engine, configured) if configured else local_base_image(engine)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docker-pool")
    root = tmp / "root"
    tutorial = root / "tutorial"
    shutil.copytree(NOTEBOOKS, tutorial, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (tutorial / "session-id.txt").write_text(uuid.uuid4().hex)
    cases = root / "cases"
    cases.mkdir()
    for name in ("docker_oom.ipynb", "docker_sleep.ipynb", "docker_env.ipynb", "artifacts.ipynb"):
        shutil.copy(DATA / name, cases / name)
    # One nbflows wheel for the module, for the CLI and the kernel alike: the content tags must
    # not change when the nbflows source is edited while the tests run.
    package = nbflows_package()
    env = {IMAGE_WHEEL_ENV: str(package.wheel)} if package.wheel is not None else {}
    srv = start_server(
        tmp,
        root=root,
        env=env,
        extra_args=[
            # One list item per option (see servers.py).
            "--NBFlowsExtension.embedded_worker_types=process",
            "--NBFlowsExtension.embedded_worker_types=docker",
        ],
    )
    srv.env.update(env)  # for the CLI's subprocesses too
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Deployed:
    """The tutorial deployed to the docker pool `my-pool` by the CLI, as the seed tutorial does."""

    deploy: subprocess.CompletedProcess[str]
    deployment: dict[str, Any]
    reference: str
    seconds: float


@pytest.fixture(scope="module")
def tutorial(server: Server, engine: Any, base_image: str) -> Deployed:
    created = server.cli("work-pool", "create", "my-pool", "--type", "docker")
    assert created.returncode == 0, created.stderr
    started = time.monotonic()
    done = server.cli(
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "my-first-deployment",
        "--pool",
        "my-pool",
        "--image",
        TUTORIAL_IMAGE,
        "--base-image",
        base_image,
        "--no-push",
        timeout=900,
        cwd=server.root / "tutorial",
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nfirst deploy of the tutorial (build included): {seconds:.1f} s")
    with server.client() as api:
        deployment = api.read_deployment("get_repo_info/my-first-deployment")
    return Deployed(done, deployment, deployment["image"]["reference"], seconds)


def cli_ok(server: Server, *args: str, cwd: Path | None = None) -> str:
    done = server.cli(*args, timeout=600, cwd=cwd)
    assert done.returncode == 0, f"nbflows {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_to_end(server: Server, ref: str, **fields: Any) -> dict[str, Any]:
    with server.client() as api:
        run = api.create_flow_run_from_deployment(ref, **fields)
        return api.watch_flow_run(str(run["id"]), timeout=300)


def state_of(run: dict[str, Any]) -> tuple[str, str]:
    return str(run["state"]["type"]), str(run["state"].get("message") or "")


def messages(server: Server, run_id: str) -> list[str]:
    with server.client() as api:
        return [line["message"] for line in api.read_logs(run_id, limit=1000)["items"]]


def containers_of(engine: Any, run_id: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL_FLOW_RUN}={run_id}"}))


def steps_of(output: str) -> list[tuple[str, bool]]:
    """(instruction, from the layer cache) of each Dockerfile step a build printed."""
    steps: list[tuple[str, bool]] = []
    for line in output.splitlines():
        step = re.match(r"^Step \d+/\d+ : (.*)$", line)
        if step:
            steps.append((step.group(1), step.group(1).startswith("FROM ")))
        elif line.strip() == "---> Using cache" and steps:
            steps[-1] = (steps[-1][0], True)
    return steps


@pytest.fixture(scope="module")
def cases_pool(server: Server, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A docker pool whose template names the base image: its deployments need no
    --base-image (the embedded worker serves docker pools created after it started too). Its
    administrator allows bind mounts of the tests' temporary folders."""
    with server.client() as api:
        template = api.get_default_base_job_template("docker")
        template["variables"]["properties"]["base_image"]["default"] = base_image
        template["job_configuration"]["allowed_host_paths"] = [str(tmp_path_factory.getbasetemp())]
        api.create_work_pool("cases-pool", "docker", base_job_template=template)
    return "cases-pool"


def deploy_case(server: Server, pool: str, notebook: str, name: str, *extra: str) -> dict[str, Any]:
    """Deploy a notebook of `cases/` with an image built on the pool's base image."""
    out = cli_ok(
        server,
        "deploy",
        notebook,
        "--name",
        name,
        "--pool",
        pool,
        "--image",
        CASES_IMAGE,
        *extra,
        cwd=server.root / "cases",
    )
    with server.client() as api:
        deployment = api.read_deployment(f"{Path(notebook).stem}/{name}")
        template = api.read_work_pool(pool)["base_job_template"]
    base = template["variables"]["properties"]["base_image"]["default"]
    assert deployment["image"]["base_image"] == base
    assert re.search(rf"^Step 1/\d+ : FROM {re.escape(base)}$", out, re.M), out
    return deployment


# -- (a) the tutorial journey -------------------------------------------------------------------


def test_tutorial_journey_on_a_docker_pool(server: Server, tutorial: Deployed, engine: Any) -> None:
    out = tutorial.deploy.stdout
    assert f"Building image {TUTORIAL_IMAGE}:" in out
    assert f"from {server.root / 'tutorial'}" in out  # the notebook's folder is the context
    assert "Successfully tagged" in out
    assert "Deployment 'get_repo_info/my-first-deployment' successfully created" in out
    assert f"Image: {tutorial.reference}" in out
    image = tutorial.deployment["image"]
    assert image["built"] is True and image["pushed"] is False
    assert image["reference"] == f"{TUTORIAL_IMAGE}:{image['tag']}"
    assert len(image["context_hash"]) == 64 and image["context_hash"].startswith(image["tag"])
    assert engine.images.get(tutorial.reference).labels["org.nbflows.flow"] == "get_repo_info"

    pools = cli_ok(server, "work-pool", "ls")
    assert "my-pool" in pools and "docker" in pools

    watched = server.cli(
        "deployment",
        "run",
        "get_repo_info/my-first-deployment",
        "--param",
        "repo_name=nteract/papermill",
        "--watch",
        timeout=300,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "nteract/papermill repository statistics" in watched.stdout
    assert "Stars 🌠 : 5900" in watched.stdout
    assert f"from image {tutorial.reference}" in watched.stdout  # the worker's own line
    assert "is Completed" in watched.stdout

    with server.client() as api:
        run = api.list_flow_runs(deployment_id=tutorial.deployment["id"], limit=1)[0]
        assert state_of(run)[0] == "COMPLETED" and run["has_notebook"]
        executed = api.read_flow_run_notebook(str(run["id"]))
    printed = [
        "".join(output.get("text", ""))
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
    ]
    assert any("Forks 🍴 : 430" in text for text in printed), printed
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"]["tags"]]
    assert "nteract/papermill" in "".join(injected[0]["source"])
    assert containers_of(engine, str(run["id"])) == []  # auto_remove


def test_failing_cell_fails_the_run_with_the_exception(server: Server, tutorial: Deployed) -> None:
    run = run_to_end(
        server, "get_repo_info/my-first-deployment", parameters={"repo_name": "nope/nope"}
    )
    state, message = state_of(run)
    assert state == "FAILED"
    assert "ValueError: unknown repository 'nope/nope'" in message
    assert re.search(r"\(cell \d+, In \[\d+\]\)", message), message
    with server.client() as api:
        executed = api.read_flow_run_notebook(str(run["id"]))
    errors = [
        o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
    ]
    assert errors[0]["ename"] == "ValueError"


def test_whole_notebook_run_relays_child_flow_runs(server: Server, tutorial: Deployed) -> None:
    # The whole tutorial notebook: its %%flow cell becomes a child run, reported from inside the
    # container through the output stream (the container has no path to the server).
    cli_ok(
        server,
        "deploy",
        "repo_info.ipynb",
        "--name",
        "whole",
        "--pool",
        "my-pool",
        "--image",
        TUTORIAL_IMAGE,
        "--base-image",
        tutorial.deployment["image"]["base_image"],
        cwd=server.root / "tutorial",
    )
    run = run_to_end(server, "repo_info/whole", parameters={"repo_name": "ipython/ipython"})
    assert state_of(run) == ("COMPLETED", "")
    with server.client() as api:
        children = api.list_flow_runs(parent_run_id=str(run["id"]))
    by_name = {c["flow_name"]: c for c in children}
    assert sorted((c["flow_name"], state_of(c)[0]) for c in children) == [
        ("get_repo_info", "COMPLETED"),
        ("summarize_repos", "COMPLETED"),
    ]
    assert "Stars 🌠 : 16200" in messages(server, str(by_name["get_repo_info"]["id"]))
    assert "Stars 🌠 : 16200" in messages(server, str(run["id"]))


def test_custom_command_runs_instead_and_its_exit_code_decides(
    server: Server, tutorial: Deployed
) -> None:
    script = "echo custom on stdout; echo custom on stderr >&2; exit 3"
    run = run_to_end(
        server,
        "get_repo_info/my-first-deployment",
        job_variables={"command": ["sh", "-c", script]},
    )
    state, message = state_of(run)
    assert state == "FAILED"
    assert message.startswith("the container exited with code 3: "), message
    with server.client() as api:
        lines = api.read_logs(str(run["id"]))["items"]
    sources = {line["message"]: line["source"] for line in lines}
    assert sources["custom on stdout"] == "stdout"
    assert sources["custom on stderr"] == "stderr"
    assert not run["has_notebook"]  # the command left no executed notebook


# -- (b) content-addressed images ---------------------------------------------------------------


def test_redeploying_unchanged_builds_nothing_and_a_notebook_edit_rebuilds_the_last_layers(
    server: Server, tutorial: Deployed, base_image: str
) -> None:
    deploy_args = ("--pool", "my-pool", "--image", TUTORIAL_IMAGE, "--base-image", base_image)
    started = time.monotonic()
    again = cli_ok(
        server,
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "my-first-deployment",
        *deploy_args,
        cwd=server.root / "tutorial",
    )
    unchanged_seconds = time.monotonic() - started
    assert f"Image {tutorial.reference} is up to date: nothing to build" in again
    assert steps_of(again) == [] and "Building image" not in again
    with server.client() as api:
        redeployed = api.read_deployment("get_repo_info/my-first-deployment")
    assert redeployed["version"] == tutorial.deployment["version"] + 1
    assert redeployed["image"]["reference"] == tutorial.reference
    assert redeployed["image"]["built"] is False

    # A copy of the project elsewhere is the same content: the same image, nothing built.
    edited = server.root / "tutorial-edited"
    shutil.copytree(server.root / "tutorial", edited)
    copy_out = cli_ok(
        server,
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "edited",
        *deploy_args,
        cwd=edited,
    )
    assert f"Image {tutorial.reference} is up to date" in copy_out

    # Edit only the notebook (its flow cell): only the layers from the project files on rebuild.
    notebook = nbformat.read(edited / "repo_info.ipynb", as_version=4)
    flow_cell = next(c for c in notebook.cells if c.source.startswith("%%flow get_repo_info"))
    flow_cell.source += '\nprint(f"Watchers 👀 : edited")'
    nbformat.write(notebook, edited / "repo_info.ipynb")
    started = time.monotonic()
    rebuilt = cli_ok(
        server,
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "edited",
        *deploy_args,
        cwd=edited,
    )
    rebuild_seconds = time.monotonic() - started
    with server.client() as api:
        reference = api.read_deployment("get_repo_info/edited")["image"]["reference"]
    assert reference != tutorial.reference
    steps = steps_of(rebuilt)
    first_project_step = next(i for i, (s, _) in enumerate(steps) if s.startswith("COPY . "))
    below, above = steps[:first_project_step], steps[first_project_step:]
    assert [s.split()[0] for s, _ in below] == ["FROM", "ENV", "RUN", "COPY", "RUN"], below
    assert all(cached for _, cached in below), below
    assert not any(cached for _, cached in above), above
    assert re.search(rf"Built image {re.escape(reference)} in [\d.]+ s: {len(below)} of", rebuilt)
    print(
        f"\nno-change redeploy (CLI, end to end): {unchanged_seconds:.1f} s; "
        f"notebook-only rebuild and redeploy: {rebuild_seconds:.1f} s "
        f"({len(above)} of {len(steps)} steps rebuilt)"
    )
    # The new code runs.
    run = run_to_end(server, "get_repo_info/edited")
    assert state_of(run) == ("COMPLETED", "")
    assert "Watchers 👀 : edited" in messages(server, str(run["id"]))


def test_flow_deploy_in_a_kernel_builds_the_same_image_and_shows_progress(
    server: Server, tutorial: Deployed, base_image: str
) -> None:
    from jupyter_client.manager import start_new_kernel

    folder = server.root / "tutorial"
    env = {
        **os.environ,
        **server.env,
        "JPY_SESSION_NAME": str(folder / "repo_info.ipynb"),
        "NBFLOWS_API_URL": server.api,
        "NBFLOWS_API_TOKEN": server.token,
    }
    for name in ("NBFLOWS_FLOW_RUN_ID", "NBFLOWS_FLOW_NAME", "NBFLOWS_RUN_KIND"):
        env.pop(name, None)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(folder), env=env)
    shown: list[str] = []
    printed: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("display_data", "update_display_data"):
            shown.append(content["data"].get("text/plain", ""))
        elif kind == "stream":
            printed.append(content["text"])
        elif kind == "error":
            printed.append("\n".join(content["traceback"]))

    try:
        source = nbformat.read(folder / "repo_info.ipynb", as_version=4)
        cells = [
            c.source for c in source.cells if c.cell_type == "code" and ".deploy(" not in c.source
        ]
        for code in cells:
            reply = kc.execute_interactive(code, output_hook=collect, timeout=120)
            assert reply["content"]["status"] == "ok", printed
        code = (
            "from nbflows.packaging.images import DeploymentImage\n"
            "get_repo_info.deploy(name='from-kernel', work_pool_name='my-pool', "
            f"image=DeploymentImage(name={TUTORIAL_IMAGE!r}, base_image={base_image!r}), "
            "push=False)"
        )
        reply = kc.execute_interactive(code, output_hook=collect, timeout=600)
        assert reply["content"]["status"] == "ok", printed
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert shown and shown[-1] == f"Image {tutorial.reference} is up to date: nothing to build"
    assert f"Image: {tutorial.reference}" in "".join(printed)
    with server.client() as api:
        deployment = api.read_deployment("get_repo_info/from-kernel")
    assert deployment["image"]["reference"] == tutorial.reference
    assert deployment["image"]["built"] is False


# -- (c) what goes wrong, said clearly ----------------------------------------------------------


def test_failing_dockerfile_step_is_named_and_deploys_nothing(
    server: Server, tutorial: Deployed, base_image: str
) -> None:
    project = server.root / "bad-build"
    project.mkdir()
    shutil.copy(DATA / "docker_sleep.ipynb", project / "docker_sleep.ipynb")
    (project / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo preparing\nRUN echo about to fail && ls /nowhere\n"
    )
    done = server.cli(
        "deploy",
        "docker_sleep.ipynb",
        "--name",
        "bad",
        "--pool",
        "my-pool",
        "--image",
        "nbflows-test/bad-build",
        "--dockerfile",
        "Dockerfile",
        timeout=300,
        cwd=project,
    )
    assert done.returncode == 1
    assert "failed at step 'RUN echo about to fail && ls /nowhere'" in done.stderr
    assert "No such file or directory" in done.stderr
    assert "about to fail" in done.stdout  # streamed as it came
    with server.client() as api:
        assert "bad" not in [d["name"] for d in api.list_deployments(flow_name="docker_sleep")]


def test_missing_base_image_is_said_and_deploys_nothing(server: Server, tutorial: Deployed) -> None:
    done = server.cli(
        "deploy",
        "docker_oom.ipynb",
        "--name",
        "no-base",
        "--pool",
        "my-pool",
        "--image",
        "nbflows-test/no-base",
        "--base-image",
        "nbflows-test/no-such-base:0",
        timeout=300,
        cwd=server.root / "cases",
    )
    assert done.returncode == 1
    assert "The base image nbflows-test/no-such-base:0 cannot be found" in done.stderr
    with server.client() as api:
        assert "no-base" not in [d["name"] for d in api.list_deployments(flow_name="docker_oom")]


def test_pinned_job_variable_is_refused_at_deploy_before_any_build(
    server: Server, tutorial: Deployed
) -> None:
    with server.client() as api:
        template = api.get_default_base_job_template("docker")
        for name, pinned in (("privileged", False), ("base_image", "corp/python:3.11")):
            template["job_configuration"][name] = pinned
            del template["variables"]["properties"][name]
        api.create_work_pool("locked-pool", "docker", base_job_template=template)
    done = server.cli(
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "privileged",
        "--pool",
        "locked-pool",
        "--image",
        TUTORIAL_IMAGE,
        "--job-variable",
        "privileged=true",
        cwd=server.root / "tutorial",
    )
    assert done.returncode == 1
    assert "'privileged' pinned by the work pool" in done.stderr
    assert "Building" not in done.stdout and "up to date" not in done.stdout
    other_base = server.cli(
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "other-base",
        "--pool",
        "locked-pool",
        "--image",
        TUTORIAL_IMAGE,
        "--base-image",
        "python:3.12-slim",
        cwd=server.root / "tutorial",
    )
    assert other_base.returncode == 1
    assert "pins the base image corp/python:3.11" in other_base.stderr
    assert "Building" not in other_base.stdout
    # The server says the same (422) to a client that skips the check.
    answer = server.http(
        "POST",
        "deployments",
        json={
            "path": str(server.root / "tutorial" / "repo_info.ipynb"),
            "flow_name": "get_repo_info",
            "name": "privileged",
            "work_pool_name": "locked-pool",
            "job_variables": {"privileged": True},
            "image": {"reference": tutorial.reference},
        },
    )
    assert answer.status_code == 422
    assert "pinned by the work pool" in answer.json()["message"]
    with server.client() as api:
        names = [d["name"] for d in api.list_deployments(flow_name="get_repo_info")]
    assert "privileged" not in names


def test_image_without_a_tag_or_asking_the_server_to_build_is_refused(
    server: Server, tutorial: Deployed
) -> None:
    body = {
        "path": str(server.root / "tutorial" / "repo_info.ipynb"),
        "flow_name": "get_repo_info",
        "name": "untagged",
        "work_pool_name": "my-pool",
    }
    untagged = server.http("POST", "deployments", json={**body, "image": {"name": "sales"}})
    assert untagged.status_code == 422 and "has no tag" in untagged.json()["message"]
    building = server.http(
        "POST", "deployments", json={**body, "image": {"name": "sales", "build": True}}
    )
    assert building.status_code == 422
    assert "the server builds and pushes no images" in building.json()["message"]
    tagged = server.http("POST", "deployments", json={**body, "image": {"name": "sales:v1"}})
    assert tagged.status_code == 201
    assert tagged.json()["image"]["reference"] == "sales:v1"


def test_missing_image_at_run_time_names_the_image(server: Server, tutorial: Deployed) -> None:
    cli_ok(
        server,
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "missing-image",
        "--pool",
        "my-pool",
        "--job-variable",
        "image=nbflows-missing:none",
        "--job-variable",
        "image_pull_policy=Never",
        cwd=server.root / "tutorial",
    )
    run = run_to_end(server, "get_repo_info/missing-image")
    state, message = state_of(run)
    assert state == "CRASHED"
    assert message.startswith(
        "image nbflows-missing:none not found locally (image_pull_policy Never)"
    )


def test_container_killed_for_memory_crashes_with_out_of_memory(
    server: Server, engine: Any, cases_pool: str
) -> None:
    deploy_case(server, cases_pool, "docker_oom.ipynb", "small", "--job-variable", "mem_limit=32m")
    # 32 MB: not even the runner's Python fits; the container is killed for memory.
    run = run_to_end(server, "docker_oom/small")
    state, message = state_of(run)
    assert state == "CRASHED" and message.startswith("killed: out of memory (mem_limit 32m)")

    # Enough for the runner and the kernel (about 100 MB), not for the cell's 400 MB: the kernel
    # is killed while running that cell, and the notebook says so.
    run = run_to_end(
        server,
        "docker_oom/small",
        parameters={"size_mb": 400},
        job_variables={"mem_limit": "160m"},
    )
    state, message = state_of(run)
    assert state == "CRASHED", message
    assert message.startswith(
        "killed: out of memory (mem_limit 160m): The kernel died while running cell 2"
    )
    # (The cell's "allocating" line may die with the kernel before its I/O thread sends it, so
    # the executed notebook, not the log, is where the failing cell is checked.)
    with server.client() as api:
        executed = api.read_flow_run_notebook(str(run["id"]))
    [dead] = [
        c
        for c in executed["cells"]
        if any(o.get("ename") == "DeadKernelError" for o in c.get("outputs", []))
    ]
    assert "".join(dead["source"]).startswith('print("allocating"')
    assert containers_of(engine, str(run["id"])) == []


def test_cancelling_a_sleeping_run_stops_and_removes_its_container(
    server: Server, engine: Any, cases_pool: str
) -> None:
    deploy_case(server, cases_pool, "docker_sleep.ipynb", "long")
    with server.client() as api:
        run_id = str(api.create_flow_run_from_deployment("docker_sleep/long")["id"])
        wait_for(
            lambda: "sleeping 600" in messages(server, run_id), "the run to sleep", timeout=180
        )
        assert [c.status for c in containers_of(engine, run_id)] == ["running"]
        api.cancel_flow_run(run_id)
        run = api.watch_flow_run(run_id, timeout=120)
    state, message = state_of(run)
    assert state == "CANCELLED"
    # The sleeping cell (no parameters were set, so none are injected before it).
    assert "Cancelled while running cell 1" in message
    assert containers_of(engine, run_id) == []

    # A timeout stops it too, and fails the run.
    run = run_to_end(
        server, "docker_sleep/long", parameters={"seconds": 60}, job_variables={"timeout": 2}
    )
    assert state_of(run) == (
        "FAILED",
        "Timed out: the run exceeded its timeout of 2 s; stopped while running cell 2, In [3].",
    )


def test_job_configuration_reaches_the_container(
    server: Server, engine: Any, cases_pool: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    deploy_case(
        server,
        cases_pool,
        "docker_env.ipynb",
        "configured",
        "--job-variable",
        'env={"GREETING": "hello from the job"}',
        "--job-variable",
        'labels={"team": "data"}',
        "--job-variable",
        f'volumes=["{shared}:/data"]',
        "--job-variable",
        "network_mode=none",
        "--job-variable",
        "cpus=0.5",
        "--job-variable",
        "mem_limit=512m",
        "--job-variable",
        "auto_remove=false",
    )
    run = run_to_end(server, "docker_env/configured")
    run_id = str(run["id"])
    assert state_of(run) == ("COMPLETED", "")
    lines = messages(server, run_id)
    assert "greeting: hello from the job" in lines
    assert "interfaces: ['lo']" in lines  # network_mode none
    assert (shared / "written-in-container.txt").read_text() == run_id
    assert f"container nbflows-{run_id}-1 is kept (auto_remove is false)" in lines
    (kept,) = containers_of(engine, run_id)
    try:
        host = kept.attrs["HostConfig"]
        assert kept.labels["team"] == "data" and kept.labels[LABEL_FLOW_RUN] == run_id
        with server.client() as api:
            pool_id = api.read_work_pool(cases_pool)["id"]
        expected = {
            "team": "data",
            LABEL_FLOW_RUN: run_id,
            LABEL_ATTEMPT: "1",
            LABEL_DEPLOYMENT: "docker_env/configured",
            LABEL_WORK_POOL: cases_pool,
            LABEL_WORK_POOL_ID: pool_id,
            LABEL_WORKER: run["worker_name"],
            LABEL_KEEP: "true",
        }
        assert {key: kept.labels.get(key) for key in expected} == expected
        machine, _namespace, pid = kept.labels[LABEL_WORKER_PROCESS].split(" ")
        assert machine == socket.gethostname() and int(pid) > 0
        assert (host["NetworkMode"], host["NanoCpus"], host["Memory"]) == (
            "none",
            500_000_000,
            512 * 1024 * 1024,
        )
        assert host["MemorySwap"] == host["Memory"] and host["Privileged"] is False
        assert json.loads(json.dumps(host["Binds"])) == [f"{shared}:/data"]
    finally:
        kept.remove(force=True)


def test_files_a_container_writes_to_its_output_folder_become_artifacts(
    server: Server, cases_pool: str, tmp_path: Path
) -> None:
    deploy_case(server, cases_pool, "artifacts.ipynb", "in-docker")
    run = run_to_end(server, "artifacts/in-docker", parameters={"rows": 2})
    assert state_of(run) == ("COMPLETED", ""), messages(server, str(run["id"]))

    listed = cli_ok(server, "flow-run", "artifacts", str(run["id"]))
    cli_ok(server, "flow-run", "artifact", str(run["id"]), "report.csv", "-o", str(tmp_path / "r"))

    assert "plots/fig.bin" in listed and "report.csv" in listed
    assert (tmp_path / "r").read_text() == "n,square\n0,0\n1,1\n"
    assert "kept 2 artifacts of the run" in messages(server, str(run["id"]))


# -- (d) containers no live attempt owns ---------------------------------------------------------


def fake_run_container(engine: Any, base_image: str, labels: dict[str, str]) -> Any:
    """A container labelled as a run's, that runs until stopped (and stops at once)."""
    return engine.containers.run(
        base_image,
        ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        detach=True,
        labels=labels,
    )


def test_reaping_stops_only_containers_of_this_servers_pools_that_no_attempt_owns(
    server: Server, engine: Any, base_image: str
) -> None:
    with server.client() as api:
        pool_id = str(api.create_work_pool("reaped-pool", "docker")["id"])
        ended = api.create_flow_run("reaping-case", state="RUNNING")
        api.set_flow_run_state(str(ended["id"]), "COMPLETED")
        active = api.create_flow_run("reaping-case", state="RUNNING")
    here = f"{socket.gethostname()} {os.readlink('/proc/self/ns/pid')} {os.getpid()}"
    ours = {LABEL_WORK_POOL: "reaped-pool", LABEL_WORK_POOL_ID: pool_id, LABEL_ATTEMPT: "1"}
    cases = {
        # This server's pool, a run that does not exist: nothing owns it.
        "unknown run": {**ours, LABEL_FLOW_RUN: uuid.uuid4().hex, LABEL_WORKER: "ghost"},
        # A pool of the same name on another server sharing the engine: not ours to judge.
        "other server": {
            **ours,
            LABEL_WORK_POOL_ID: uuid.uuid4().hex,
            LABEL_FLOW_RUN: uuid.uuid4().hex,
            LABEL_WORKER: "ghost",
        },
        # Kept for inspection, its run over: stopped, not removed.
        "kept, run over": {
            **ours,
            LABEL_FLOW_RUN: str(ended["id"]),
            LABEL_WORKER: "ghost",
            LABEL_KEEP: "true",
        },
        # Its run is active, in that attempt, held as labelled, by a process that lives.
        "owned": {**ours, LABEL_FLOW_RUN: str(active["id"]), LABEL_WORKER_PROCESS: here},
    }
    made = {name: fake_run_container(engine, base_image, labels) for name, labels in cases.items()}
    try:

        def status(name: str) -> str:
            try:
                made[name].reload()
            except docker.errors.NotFound:
                return "removed"
            return str(made[name].status)

        wait_for(
            lambda: status("unknown run") == "removed" and status("kept, run over") == "exited",
            "the embedded docker worker to reap",
            timeout=REAP_INTERVAL * 6 + 30,
        )
        assert status("other server") == "running" and status("owned") == "running"
        said = messages(server, str(ended["id"]))
        assert (
            f"container {made['kept, run over'].name} of attempt 1 was still running (its run "
            "is COMPLETED): worker "
        ) in said[-1]
        assert said[-1].endswith("' stopped it (kept: auto_remove is false)"), said
    finally:
        for container in made.values():
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


# -- (e) host access: refused unless the pool's administrator allows it ---------------------------


def deploy_body(server: Server, pool: str, name: str, **job_variables: Any) -> dict[str, Any]:
    """A deploy request of the tutorial flow with an image reference (nothing is built)."""
    return {
        "path": str(server.root / "tutorial" / "repo_info.ipynb"),
        "flow_name": "get_repo_info",
        "name": name,
        "work_pool_name": pool,
        "job_variables": job_variables,
        "image": {"name": "nbflows-test/not-built:v1"},
    }


def test_host_mounts_privileged_and_host_network_are_refused_with_422(server: Server) -> None:
    with server.client() as api:
        api.create_work_pool("plain-pool", "docker")
    refused: dict[str, tuple[dict[str, Any], str]] = {
        "host root": ({"volumes": ["/:/host"]}, "job variable 'volumes' mounts the host path '/'"),
        "docker socket": (
            {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
            "job variable 'volumes' mounts the container engine's socket",
        ),
        "privileged": ({"privileged": True}, "job variable 'privileged' is true"),
        "host network": ({"network_mode": "host"}, "job variable 'network_mode' is 'host'"),
    }
    for case, (variables, said) in refused.items():
        answer = server.http(
            "POST", "deployments", json=deploy_body(server, "plain-pool", "host", **variables)
        )
        assert answer.status_code == 422, (case, answer.text)
        message = answer.json()["message"]
        assert said in message and "allowed: " in message, message
        assert "pool administrator allows" in message
    with server.client() as api:
        assert [d["name"] for d in api.list_deployments(flow_name="get_repo_info")].count(
            "host"
        ) == 0

    # Named volumes are not the host's: fine. A run may not ask for more than its deployment.
    created = server.http(
        "POST",
        "deployments",
        json=deploy_body(server, "plain-pool", "named", volumes=["cache:/cache"]),
    )
    assert created.status_code == 201, created.text
    run = server.http(
        "POST",
        f"deployments/{created.json()['id']}/runs",
        json={"job_variables": {"volumes": ["/etc:/etc-of-host:ro"]}},
    )
    assert run.status_code == 422
    assert "mounts the host path '/etc'" in run.json()["message"]

    # The CLI says it before any build.
    done = server.cli(
        "deploy",
        "repo_info.ipynb:get_repo_info",
        "--name",
        "privileged",
        "--pool",
        "plain-pool",
        "--image",
        TUTORIAL_IMAGE,
        "--job-variable",
        "privileged=true",
        cwd=server.root / "tutorial",
    )
    assert done.returncode == 1
    assert "job variable 'privileged' is true" in done.stderr
    assert "Building" not in done.stdout

    # An administrator's allowance must be hard-coded, not a variable a deployment could set.
    with server.client() as api:
        template = api.get_default_base_job_template("docker")
    template["job_configuration"]["allow_privileged"] = "{{ privileged }}"
    answer = server.http(
        "POST",
        "work_pools",
        json={"name": "loose-pool", "type": "docker", "base_job_template": template},
    )
    assert answer.status_code == 422
    assert "allow_privileged must be hard-coded" in answer.json()["message"]


def test_worker_refuses_a_container_whose_host_access_the_server_could_not_judge(
    server: Server, engine: Any, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "data").mkdir(parents=True)
    (allowed / "root").symlink_to("/")
    with server.client() as api:
        template = api.get_default_base_job_template("docker")
        template["job_configuration"]["allowed_host_paths"] = [str(allowed)]
        api.create_work_pool("trusting-pool", "docker", base_job_template=template)
    for name, volume in (("link", f"{allowed}/root:/host"), ("data", f"{allowed}/data:/data")):
        answer = server.http(
            "POST", "deployments", json=deploy_body(server, "trusting-pool", name, volumes=[volume])
        )
        assert answer.status_code == 201, answer.text  # within the allowed folder, as written

    # A link inside the allowed folder leads to the host's root: only the worker can see it.
    run = run_to_end(server, "get_repo_info/link")
    state, message = state_of(run)
    assert state == "FAILED"
    assert re.match(
        rf"worker '.+' refused to create the container: job variable 'volumes' mounts the host "
        rf"path '{re.escape(str(allowed))}/root' \(a link to /\)",
        message,
    ), message
    assert containers_of(engine, str(run["id"])) == []

    # The administrator withdraws the allowance: deployments made before it cannot use it.
    with server.client() as api:
        del template["job_configuration"]["allowed_host_paths"]
        api.update_work_pool("trusting-pool", base_job_template=template)
    run = run_to_end(server, "get_repo_info/data")
    state, message = state_of(run)
    assert state == "FAILED"
    assert f"mounts the host path '{allowed}/data'; allowed: named volumes (" in message
    assert containers_of(engine, str(run["id"])) == []
