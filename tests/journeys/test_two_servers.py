"""Two servers on one PostgreSQL store, each started as the README starts it: a run created
through one server's CLI is claimed at once by a worker long-polling through the other, and
completes; both schedulers run without duplicating scheduled runs."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.journeys.conftest import BIN, Journey, make_journey
from tests.pg_support import postgres_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: A worker's claim long-polls for 20 s; a run that reaches it only when that poll ends, or
#: when the run goes Late (15 s), waits 13 s or more. Woken across servers it takes milliseconds.
AT_ONCE = 8.0


def server_on(tmp: Path, url: str) -> Journey:
    """A machine whose server uses the shared store and runs no embedded worker (README,
    "Running at scale": `NBFLOWS_DATABASE_URL` and `jupyter_server_config.py`)."""
    machine = make_journey(tmp)
    machine.env["NBFLOWS_DATABASE_URL"] = url
    config = Path(machine.env["JUPYTER_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.py").write_text("c.NBFlowsExtension.embedded_worker = False\n")
    return machine.start()


def test_a_run_created_through_one_server_is_claimed_through_the_other_at_once(
    tmp_path: Path,
) -> None:
    with postgres_server() as url:
        a = server_on(tmp_path / "a", url)
        b = server_on(tmp_path / "b", url)
        worker: subprocess.Popen[bytes] | None = None
        worker_log = tmp_path / "worker.log"
        try:
            a.cli("work-pool", "create", "shared", "--type", "process", check=True)
            a.cli("work-pool", "create", "later", "--type", "process", check=True)
            a.cli(
                "deploy", "notebooks/trivial.ipynb", "--name", "now", "--pool", "shared", check=True
            )
            a.cli(
                "deploy",
                "notebooks/trivial.ipynb",
                "--name",
                "every-minute",
                "--pool",
                "later",
                "--cron",
                "* * * * *",
                check=True,
            )

            # A worker on another machine, pointed at server B.
            with worker_log.open("wb") as out:
                worker = subprocess.Popen(
                    [str(BIN / "nbflows"), "worker", "start", "--pool", "shared", "--name", "far"],
                    env={**b.env, "NBFLOWS_API_URL": b.api, "NBFLOWS_API_TOKEN": b.token},
                    cwd=b.root.parent,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            b.wait_for(
                "the worker serves the pool through B",
                lambda: "serving work pool 'shared'" in worker_log.read_text(errors="replace"),
                timeout=60,
            )
            time.sleep(1.0)  # its claim is parked on B by now

            made = a.cli("deployment", "run", "trivial/now", check=True)
            created = time.monotonic()
            match = re.search(r"UUID: ([0-9a-f-]{32,36})", made.stdout)
            assert match, made.stdout
            run_id = match.group(1)

            def claimed() -> bool:
                run = a.http("GET", f"flow_runs/{run_id}").json()
                return run.get("worker_name") == "far"

            a.wait_for("the run is claimed by the worker on B", claimed, timeout=60, every=0.05)
            waited = time.monotonic() - created
            assert waited < AT_ONCE, f"the worker on B got the run after {waited:.1f} s"

            final = a.wait_for(
                "the run completes",
                lambda: (
                    (run := a.http("GET", f"flow_runs/{run_id}").json())["state"]["type"]
                    in ("COMPLETED", "FAILED", "CRASHED")
                    and run
                ),
            )
            assert final["state"]["type"] == "COMPLETED", final

            # Both schedulers have made passes by now (every 5 s): one run per schedule time.
            for server in (a, b):
                upcoming = server.http("GET", "deployments/name/trivial/every-minute").json()
                runs = server.http(
                    "GET", f"deployments/{upcoming['id']}/upcoming", params={"limit": 1000}
                ).json()
                times = [r["expected_start_time"] for r in runs]
                assert len(times) >= 3 and len(times) == len(set(times)), "duplicated runs"
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            b.stop()
            a.stop()
