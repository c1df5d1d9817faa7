"""Docker journey: a docker work pool served by a standalone worker, as the README's docker
section runs it; then the worker killed mid-run (SIGKILL): the run crashes, its container does
not outlive it, and the retry runs once, never beside the old container.

One server (the README's `nbflows server`, default SQLite store) and one image name for the
module; the images are built on the local base image (`NBFLOWS_TEST_BASE_IMAGE`, else
`.ci/base-image.sh`'s) and removed at the end, the containers looked at through the `docker`
CLI by their labels. Without a Docker engine the journey skips, except under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.docker_support import docker_client, local_base_image, remove_image, unavailable
from tests.journeys.conftest import BIN, Journey, make_journey

# A first build on a fresh engine installs papermill and ipykernel into the image.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.xdist_group("docker-journey"),  # one machine (server, worker, image) per module
]

POOL = "my-docker-pool"
#: Unique to this test run: concurrent runs on one engine must not remove each other's images.
IMAGE = f"repo-info-{uuid.uuid4().hex[:8]}"
LABEL_RUN = "org.nbflows.flow-run-id"
LABEL_ATTEMPT = "org.nbflows.attempt"


@dataclass
class DockerMachine:
    """The user's machine: the server, the docker pool, the worker(s) they started."""

    journey: Journey
    engine: Any
    base_image: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def start_worker(self) -> tuple[subprocess.Popen[bytes], Path]:
        """`nbflows worker start --pool my-docker-pool` in a terminal of its own; returns once
        it serves the pool."""
        output = self.journey.home / f"worker-{len(self.workers) + 1}.log"
        proc = subprocess.Popen(
            [str(BIN / "nbflows"), "worker", "start", "--pool", POOL],
            stdout=output.open("wb"),
            stderr=subprocess.STDOUT,
            env=self.journey.env,
            cwd=self.journey.root.parent,
        )
        self.workers.append(proc)
        self.journey.wait_for(
            f"the worker to serve {POOL}",
            lambda: (
                (
                    proc.poll() is None
                    and f"serving work pool '{POOL}'" in output.read_text(errors="replace")
                )
                or _exited(proc, output)
            ),
            timeout=60,
        )
        return proc, output

    def run_json(self, run_id: str) -> dict[str, Any]:
        answer = self.journey.http("GET", f"flow_runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def messages(self, run_id: str) -> list[str]:
        answer = self.journey.http("GET", f"flow_runs/{run_id}/logs", params={"limit": 1000})
        return [line["message"] for line in answer.json()["items"]]


def _exited(proc: subprocess.Popen[bytes], output: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the worker exited {proc.returncode}:\n{output.read_text()}")
    return False


def containers(run_id: str) -> list[tuple[str, str, str]]:
    """(name, state, attempt) of the run's containers, as `docker ps -a` lists them by label."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={LABEL_RUN}={run_id}",
            "--format",
            f'{{{{.Names}}}} {{{{.State}}}} {{{{.Label "{LABEL_ATTEMPT}"}}}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [[*line.split(), ""] for line in done.stdout.splitlines()]
    return sorted((row[0], row[1], row[2]) for row in rows)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerMachine]:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    engine = docker_client()
    configured = os.environ.get("NBFLOWS_TEST_BASE_IMAGE", "").strip()
    base = local_base_image(engine, configured) if configured else local_base_image(engine)
    journey = make_journey(tmp_path_factory.mktemp("docker-journey"))
    journey.start()
    m = DockerMachine(journey, engine, base)
    pool_id = ""
    try:
        journey.cli("work-pool", "create", POOL, "--type", "docker", check=True)
        pool_id = str(journey.http("GET", f"work_pools/{POOL}").json()["id"])
        m.start_worker()
        yield m
    finally:
        for proc in m.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        journey.stop()
        if pool_id:  # what a failed journey may have left; this journey's pool only
            for left in engine.containers.list(
                all=True, filters={"label": f"org.nbflows.work-pool-id={pool_id}"}
            ):
                left.remove(force=True)
        for image in engine.images.list(name=IMAGE):
            for reference in image.tags:
                remove_image(engine, reference)
        if m.figures:
            print("\n" + "\n".join(f"{k}: {v}" for k, v in m.figures.items()))


def test_readme_docker_section_with_a_standalone_worker(machine: DockerMachine) -> None:
    journey = machine.journey
    started = time.monotonic()
    deployed = journey.cli(
        "deploy",
        "notebooks/repo_info.ipynb:get_repo_info",
        "--name",
        "my-docker-deployment",
        "--pool",
        POOL,
        "--image",
        IMAGE,
        "--no-push",
        "--base-image",
        machine.base_image,
        timeout=900,
        check=True,
    )
    machine.figures["deploy with a build (CLI, end to end)"] = f"{time.monotonic() - started:.1f} s"
    assert "Deployment 'get_repo_info/my-docker-deployment' successfully created" in deployed.stdout
    assert f"$ nbflows worker start --pool '{POOL}'" in deployed.stdout

    started = time.monotonic()
    watched = journey.cli(
        "deployment", "run", "get_repo_info/my-docker-deployment", "--watch", timeout=300
    )
    machine.figures["docker run, request to Completed (CLI --watch)"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "Stars 🌠 : " in watched.stdout
    assert f"from image {IMAGE}:" in watched.stdout  # the worker's own line
    assert "is Completed" in watched.stdout
    run_id = re.search(r"UUID:\s+(\S+)", watched.stdout)
    assert run_id, watched.stdout
    assert containers(run_id.group(1)) == []  # removed with the run's end


ATTEMPTS_NOTEBOOK = """\
import os, time
attempt = int(os.environ.get("NBFLOWS_FLOW_RUN_ATTEMPT", "1"))
print(f"attempt {attempt} started at {time.time():.3f}", flush=True)
for tick in range(seconds if attempt == 1 else 2):
    print(f"attempt {attempt} tick {tick} at {time.time():.3f}", flush=True)
    time.sleep(1)
print(f"attempt {attempt} finished at {time.time():.3f}", flush=True)
"""


def write_attempts_notebook(folder: Path) -> None:
    """A notebook that runs `seconds` on its first attempt and 2 s on a retry, printing when."""
    parameters = nbformat.v4.new_code_cell("seconds = 40")
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[parameters, nbformat.v4.new_code_cell(ATTEMPTS_NOTEBOOK)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(nb, folder / "attempts.ipynb")


def test_worker_killed_mid_run_crashes_the_run_and_leaves_no_container(
    machine: DockerMachine,
) -> None:
    journey = machine.journey
    write_attempts_notebook(journey.root)
    journey.cli(
        "deploy",
        "notebooks/attempts.ipynb",
        "--name",
        "killed",
        "--pool",
        POOL,
        "--image",
        IMAGE,
        "--no-push",
        "--base-image",
        machine.base_image,
        "--retries",
        "1",
        timeout=900,
        check=True,
    )
    since = int(time.time()) - 1
    created = journey.cli("deployment", "run", "attempts/killed", "--output", "json", check=True)
    run_id = str(json.loads(created.stdout)["id"])
    journey.wait_for(
        "the first attempt to run",
        lambda: any(m.startswith("attempt 1 tick 2 ") for m in machine.messages(run_id)),
        timeout=180,
    )
    [first_worker] = [p for p in machine.workers if p.poll() is None]
    assert containers(run_id) == [(f"nbflows-{run_id}-1", "running", "1")]

    first_worker.send_signal(signal.SIGKILL)
    first_worker.wait()
    killed = time.monotonic()
    crashed = journey.wait_for(
        "the server to crash the run and schedule its retry",
        lambda: (run := machine.run_json(run_id))["state"]["name"] == "AwaitingRetry" and run,
        timeout=120,
    )
    machine.figures["SIGKILL to CRASHED (retry scheduled)"] = f"{time.monotonic() - killed:.1f} s"
    message = crashed["state"]["message"]
    silence = re.match(
        r"attempt 1 crashed: worker '.+' stopped heartbeating \(last heartbeat (\d+) s", message
    )
    assert silence, message
    machine.figures["heartbeat silence at the crash verdict"] = f"{silence.group(1)} s"
    assert crashed["attempt"] == 2
    # No live worker serves the pool: the killed worker's container still runs.
    before = containers(run_id)
    assert before == [(f"nbflows-{run_id}-1", "running", "1")]

    started = time.monotonic()
    machine.start_worker()
    journey.wait_for(
        "the old attempt's container to be stopped and removed",
        lambda: all(attempt != "1" for _, _, attempt in containers(run_id)),
        timeout=120,
    )
    machine.figures["new worker start to the orphan removed"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    machine.figures["containers of the run before / after reaping"] = (
        f"{len(before)} running / {sum(a == '1' for _, _, a in containers(run_id))}"
    )
    done = journey.wait_for(
        "the retry to complete",
        lambda: (
            (run := machine.run_json(run_id))["state"]["type"] in ("COMPLETED", "FAILED") and run
        ),
        timeout=180,
    )
    assert (done["state"]["type"], done["attempt"]) == ("COMPLETED", 2), done["state"]
    assert containers(run_id) == []

    lines = machine.messages(run_id)
    assert sum(m.startswith("attempt 1 started at ") for m in lines) == 1
    assert sum(m.startswith("attempt 2 started at ") for m in lines) == 1  # the retry ran once
    assert sum(m.startswith("attempt 2 finished at ") for m in lines) == 1
    said = [m for m in lines if m.startswith(f"container nbflows-{run_id}-1 of attempt 1 ")]
    assert len(said) == 1 and re.search(
        r" was still running \(.+\): worker '.+' stopped and removed it$", said[0]
    ), lines

    # The engine's own record: attempt 1's container ended before attempt 2's started.
    events = machine.engine.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"type": "container", "label": f"{LABEL_RUN}={run_id}"},
        decode=True,
    )
    seen = [
        (event["timeNano"], event["Action"], event["Actor"]["Attributes"][LABEL_ATTEMPT])
        for event in events
        if event.get("Action") in ("start", "die")
    ]
    starts = [t for t, action, attempt in seen if action == "start" and attempt == "2"]
    deaths = [t for t, action, attempt in seen if action == "die" and attempt == "1"]
    assert len(starts) == 1 and len(deaths) == 1, seen
    assert deaths[0] < starts[0], seen
    machine.figures["attempt 1 ended before attempt 2 started by"] = (
        f"{(starts[0] - deaths[0]) / 1e9:.2f} s"
    )


SECRET = "dk_live_51c0ffee77"

SECRET_NOTEBOOK = """\
import os
print("the key is " + key, flush=True)
print("the env key is " + os.environ.get("DOCKER_SK", ""), flush=True)
"""


def test_a_secret_set_with_the_cli_is_used_in_a_container_and_shows_nowhere(
    machine: DockerMachine,
) -> None:
    journey = machine.journey
    pool = "secret-docker-pool"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('key = "none"', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(SECRET_NOTEBOOK),
            nbformat.v4.new_code_cell("%load_ext nbflows"),
            nbformat.v4.new_code_cell('%%flow inner\nprint("inner sees " + key)'),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(nb, journey.root / "secret_docker.ipynb")
    subprocess.run(
        [str(BIN / "nbflows"), "secret", "set", "DOCKER_KEY"],
        input=SECRET,
        text=True,
        capture_output=True,
        env=journey.env,
        check=True,
        timeout=120,
    )
    journey.cli("work-pool", "create", pool, "--type", "docker", check=True)
    made = journey.cli("worker-token", "create", "--pool", pool, "-o", "json", check=True)
    # Secrets are given to a worker credential only: this pool's worker has its own.
    output = journey.home / "secret-worker.log"
    worker = subprocess.Popen(
        [str(BIN / "nbflows"), "worker", "start", "--pool", pool],
        stdout=output.open("wb"),
        stderr=subprocess.STDOUT,
        env={**journey.env, "NBFLOWS_WORKER_TOKEN": json.loads(made.stdout)["token"]},
        cwd=journey.root.parent,
    )
    machine.workers.append(worker)
    journey.wait_for(
        f"the worker to serve {pool}",
        lambda: f"serving work pool '{pool}'" in output.read_text() or _exited(worker, output),
        timeout=60,
    )
    journey.cli(
        "deploy",
        "notebooks/secret_docker.ipynb",
        "--name",
        "secret",
        "--pool",
        pool,
        "--image",
        IMAGE,
        "--no-push",
        "--base-image",
        machine.base_image,
        "--param",
        "key={{ secret.DOCKER_KEY }}",
        "--job-variable",
        'env={"DOCKER_SK": "{{ secret.DOCKER_KEY }}"}',
        timeout=900,
        check=True,
    )
    watched = journey.cli("deployment", "run", "secret_docker/secret", "--watch", timeout=300)
    run_id = re.search(r"UUID:\s+(\S+)", watched.stdout)
    assert run_id and "is Completed" in watched.stdout, watched.stdout + output.read_text()
    run = run_id.group(1)
    text = "\n".join(machine.messages(run))
    assert "the key is ********" in text and "the env key is ********" in text, text
    children = journey.http("GET", "flow_runs", params={"parent_run_id": run}).json()
    assert [c["state"]["type"] for c in children if c["flow_name"] == "inner"] == ["COMPLETED"]
    nowhere = {
        "the run's logs (API)": text,
        "the CLI's logs": journey.cli("flow-run", "logs", run, check=True).stdout,
        "the executed notebook": journey.http("GET", f"flow_runs/{run}/notebook").text,
        "the dashboard's run page": journey.http("GET", f"flow_runs/{run}").text
        + httpx.get(
            f"{journey.url}nbflows/runs/{run}",
            headers={"Authorization": f"token {journey.token}"},
            timeout=60,
        ).text,
        "deployment inspect": journey.cli("deployment", "inspect", "secret_docker/secret").stdout,
        "the worker's output": output.read_text(),
        "the server log": journey.log(),
    }
    for where, shown in nowhere.items():
        assert SECRET not in shown, f"the secret's value shows in {where}"
