"""A user's standalone worker keeps serving while the server is restarted (with a new token)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.journeys.conftest import BIN, Journey


@pytest.mark.slow
def test_a_standalone_worker_serves_on_across_a_server_restart(
    journey: Journey, tmp_path: Path
) -> None:
    # This user's runs execute on their own worker only (the server's embedded one is off).
    no_embedded = ["--NBFlowsExtension.embedded_worker=False"]
    journey.start(args=no_embedded)
    journey.cli("work-pool", "create", "night-shift", "--type", "process", check=True)
    journey.cli(
        "deploy",
        "notebooks/trivial.ipynb",
        "--name",
        "nightly",
        "--pool",
        "night-shift",
        check=True,
    )
    out = (tmp_path / "worker.out").open("wb")
    # The user's third terminal: no URL, no token; the worker finds the server by itself.
    worker = subprocess.Popen(
        [str(BIN / "nbflows"), "worker", "start", "--pool", "night-shift", "--name", "mine"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=journey.env,
        cwd=journey.root.parent,
    )
    try:
        journey.wait_for(
            "the worker to serve the pool",
            lambda: "mine" in journey.cli("work-pool", "inspect", "night-shift").stdout,
        )
        old_token = journey.token

        journey.stop()  # Ctrl-C, then `nbflows server` again: a new token
        journey.start(args=no_embedded)
        assert journey.token != old_token

        result = journey.cli(
            "deployment", "run", "trivial/nightly", "--param", "x=41", "--watch", check=True
        )
        assert "Completed" in result.stdout, result.stdout
        run_id = result.stdout.split("UUID: ")[1].split()[0]
        run = json.loads(journey.cli("flow-run", "inspect", run_id, "-o", "json").stdout)
        assert run["worker_name"] == "mine"
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        print((tmp_path / "worker.out").read_text())
