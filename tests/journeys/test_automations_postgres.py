"""Two servers on one PostgreSQL store deliver each automation event once: both run a delivery
loop and a scheduler, both embedded workers run the failing runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.journeys.conftest import Journey, make_journey
from tests.journeys.test_automations import FAST_RETRIES, deploy_failing, settled
from tests.pg_support import postgres_server
from tests.receivers import HTTPReceiver, SMTPReceiver
from tests.servers import ok

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = 4


def server_on(tmp: Path, url: str) -> Journey:
    machine = make_journey(tmp)
    machine.env["NBFLOWS_DATABASE_URL"] = url
    return machine.start(args=FAST_RETRIES)


def test_two_servers_on_postgres_deliver_each_event_once(tmp_path: Path) -> None:
    with postgres_server() as url, SMTPReceiver() as smtp, HTTPReceiver() as http:
        a = server_on(tmp_path / "a", url)
        b = server_on(tmp_path / "b", url)
        try:
            deploy_failing(a)
            a.cli("work-pool", "create", "idle", "--type", "docker", check=True)
            a.cli("deploy", "notebooks/trivial.ipynb", "--name", "stuck", "--pool", "idle")
            hook = f"http://127.0.0.1:{http.port}/hook"
            a.cli(
                "automation", "create", "failed", "--on", "failed", "--notify", smtp.url(),
                "--notify", hook, "--secret", http.secret, check=True,
            )  # fmt: skip
            b.cli(
                "automation", "create", "late", "--late", "1", "--pool", "idle", "--notify", hook,
                "--secret", http.secret, check=True,
            )  # fmt: skip
            runs = [
                ok(server.http("POST", "deployments/worker_fail%2Fnightly/runs", json={}), 201)
                for server in (a, b) * (RUNS // 2)
            ]
            stuck = ok(b.http("POST", "deployments/trivial%2Fstuck/runs", json={}), 201)
            for run in runs:
                a.wait_for(f"run {run['id']} notified", lambda r=run: settled(a, r["id"], 2))
            a.wait_for("the late run notified", lambda: settled(b, stuck["id"], 1))
            time.sleep(4)  # both delivery loops and schedulers go round a few more times
            assert len(smtp.messages) == RUNS
            failed = sorted(b["run"]["id"] for b in http.bodies("/hook") if b["event"] == "FAILED")
            assert failed == sorted(run["id"] for run in runs)
            late = [b["run"]["id"] for b in http.bodies("/hook") if b["event"] == "late"]
            assert late == [stuck["id"]]
            for run in runs:
                records = settled(a, run["id"], 2)
                assert records and all(d["status"] == "delivered" for d in records), records
                assert all(d["attempts"] == 1 for d in records), records
        finally:
            a.stop()
            b.stop()
