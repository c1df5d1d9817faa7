"""A pool type from a plug-in worker, end to end: a package that adds an `nbflows.workers` entry
point gets its pool type created (with the worker's own job variables), listed by the CLI and the
dashboard, and served by `nbflows worker start` until runs complete."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.journeys.conftest import BIN, Journey

PLUGIN = '''
"""A tiny third-party worker: runs notebooks like the process worker, under its own pool type."""

from nbflows.workers.job_variables import PROCESS_VARIABLES
from nbflows.workers.process import ProcessWorker


class EchoWorker(ProcessWorker):
    type = "echo"
    job_variables = {
        "type": "object",
        "properties": {
            **PROCESS_VARIABLES["properties"],
            "greeting": {"title": "Greeting", "type": "string", "default": "hello"},
        },
    }
'''


def install_plugin(site: Path) -> None:
    """What `pip install nbflows-echo-worker` would leave: the module and its dist-info."""
    site.mkdir(parents=True)
    (site / "nbflows_echo_worker.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "nbflows_echo_worker-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nbflows-echo-worker\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[nbflows.workers]\necho = nbflows_echo_worker:EchoWorker\n"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_plugin_pool_type_is_created_listed_and_served(journey: Journey, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site)
    journey.env["PYTHONPATH"] = str(site)  # the server, the CLI and the worker all see it
    journey.start()

    journey.cli("work-pool", "create", "echoes", "--type", "echo", check=True)
    listed = journey.cli("work-pool", "ls", check=True).stdout
    assert "echoes" in listed and "echo" in listed, listed
    pool = journey.http("GET", "work_pools/echoes").json()
    assert pool["type"] == "echo"
    # The worker class brought the pool's default job variables.
    assert "greeting" in pool["base_job_template"]["variables"]["properties"]
    types = journey.http("GET", "work_pool_types").json()
    assert "echo" in {t["type"] for t in types}

    # An unknown type is still refused, naming the types there are (the plug-in's among them).
    bad = journey.cli("work-pool", "create", "nope", "--type", "nope")
    assert bad.returncode != 0 and "echo" in bad.stdout + bad.stderr, bad

    page = httpx.get(f"{journey.url}nbflows/pools?token={journey.token}", timeout=60)
    assert page.status_code == 200 and "echoes" in page.text and ">echo<" in page.text

    journey.cli(
        "deploy", "notebooks/trivial.ipynb", "--name", "plugged", "--pool", "echoes", check=True
    )
    out = (tmp_path / "worker.out").open("wb")
    worker = subprocess.Popen(
        [str(BIN / "nbflows"), "worker", "start", "--pool", "echoes", "--name", "plug"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=journey.env,
        cwd=journey.root.parent,
    )
    try:
        result = journey.cli(
            "deployment", "run", "trivial/plugged", "--param", "x=41", "--watch", check=True
        )
        assert "Completed" in result.stdout, result.stdout
        run_id = result.stdout.split("UUID: ")[1].split()[0]
        run = journey.http("GET", f"flow_runs/{run_id}").json()
        assert run["worker_name"] == "plug"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        print((tmp_path / "worker.out").read_text())
