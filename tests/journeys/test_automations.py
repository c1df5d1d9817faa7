"""Notifications and automations, as a user sets them up: rules made with the CLI against a
server started as the README does, a real failing deployment run on the process pool, and real
receivers on loopback (an SMTP server, an HTTP receiver that checks signatures, apprise's json://
pointed at it)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.journeys.conftest import BIN, Journey
from tests.receivers import HTTPReceiver, SMTPReceiver
from tests.servers import DATA, ok

pytestmark = pytest.mark.slow

#: Retries a second apart: a refused delivery is tried again within the test's patience.
FAST_RETRIES = ["--NBFlowsExtension.automation_retry_delay=1"]


def deploy_failing(journey: Journey, pool: str = "ops") -> None:
    shutil.copy(DATA / "worker_fail.ipynb", journey.root / "worker_fail.ipynb")
    journey.cli("work-pool", "create", pool, "--type", "process", check=True)
    journey.cli(
        "deploy", "notebooks/worker_fail.ipynb", "--name", "nightly", "--pool", pool, check=True
    )


def run_and_fail(journey: Journey, message: str) -> str:
    """`nbflows deployment run worker_fail/nightly --watch` until it fails; the run's id."""
    result = journey.cli(
        "deployment", "run", "worker_fail/nightly", "--param", f"message={message}", "--watch"
    )
    assert result.returncode == 1 and "Failed" in result.stdout, result.stdout + result.stderr
    return result.stdout.split("UUID: ")[1].split()[0]


def notifications(journey: Journey, run_id: str) -> list[dict[str, Any]]:
    return ok(journey.http("GET", f"flow_runs/{run_id}/notifications"))


def settled(journey: Journey, run_id: str, count: int) -> list[dict[str, Any]] | None:
    found = notifications(journey, run_id)
    done = [d for d in found if d["status"] in ("delivered", "failed")]
    return found if len(done) == count else None


def test_a_failed_run_is_e_mailed_posted_signed_and_sent_through_apprise(
    journey: Journey,
) -> None:
    with SMTPReceiver() as smtp, HTTPReceiver() as http:
        journey.start(args=FAST_RETRIES)
        deploy_failing(journey)
        journey.cli(
            "deploy",
            "notebooks/worker_fail.ipynb",
            "--name",
            "followup",
            "--pool",
            "ops",
            check=True,
        )
        # The webhook's signing key is a secret of the server, referenced by name.
        subprocess.run(
            [str(BIN / "nbflows"), "secret", "set", "HOOK_KEY"],
            input=http.secret,
            env={**journey.env, **journey.extra_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        unknown = journey.cli(
            "automation", "create", "typo", "--on", "failed",
            "--notify", f"http://127.0.0.1:{http.port}/hook", "--secret", "{{ secret.HOOK_KY }}",
        )  # fmt: skip
        assert unknown.returncode != 0 and "HOOK_KY" in unknown.stdout + unknown.stderr
        made = journey.cli(
            "automation",
            "create",
            "nightly-failed",
            "--on",
            "failed",
            "--deployment",
            "worker_fail/nightly",
            "--notify",
            smtp.url(),
            "--notify",
            f"http://127.0.0.1:{http.port}/hook/nbflows",
            "--notify",
            f"json://127.0.0.1:{http.port}/apprise",
            "--secret",
            "{{ secret.HOOK_KEY }}",
            "--run-deployment",
            "worker_fail/followup",
            "--param",
            "message={{ run.parameters.message }}",
            check=True,
        )
        assert "Created automation 'nightly-failed'" in made.stdout
        # Credentials are never shown back: not by ls, inspect, nor the API.
        for shown in (
            journey.cli("automation", "ls", "-o", "json", check=True).stdout,
            journey.cli("automation", "inspect", "nightly-failed", "-o", "json").stdout,
            journey.http("GET", "automations/nightly-failed").text,
        ):
            assert smtp.password not in shown and http.secret not in shown
            assert "mailto://bot:***@127.0.0.1" in shown

        run_id = run_and_fail(journey, "disk full on /data")

        journey.wait_for("the e-mail", lambda: smtp.messages, timeout=60)
        journey.wait_for("the webhook and apprise's post", lambda: len(http.accepted) >= 2)
        records = journey.wait_for("all four actions recorded", lambda: settled(journey, run_id, 4))
        assert {d["status"] for d in records} == {"delivered"}, json.dumps(records, indent=1)

        mail = smtp.messages[0]
        print("\n---- the failure e-mail as received ----\n" + mail.as_string())
        run = ok(journey.http("GET", f"flow_runs/{run_id}"))
        assert mail["To"] == "ops@example.com"
        assert mail["Subject"] == f"nbflows: run {run['name']} of worker_fail/nightly FAILED"
        body = mail.get_content().replace("\r\n", "\n")
        assert "ValueError: disk full on /data" in body  # the error line
        assert "before the failure" in body  # the tail of the logs
        assert f":{journey.port}/nbflows/runs/{run_id}\n" in body  # the dashboard link

        [hook] = http.bodies("/hook")
        print("---- the webhook body as received ----\n" + json.dumps(hook, indent=2))
        assert hook["event"] == "FAILED" and hook["run"]["id"] == run_id
        assert hook["run"]["error"].startswith("ValueError: disk full on /data")
        [posted] = http.bodies("/apprise")
        assert "disk full on /data" in posted["message"] and run["name"] in posted["title"]

        # The run-a-deployment action took its parameter from the failed run.
        [followup] = [
            r
            for r in ok(journey.http("GET", "flow_runs", params={"flow_name": "worker_fail"}))
            if r["deployment_name"] == "worker_fail/followup"
        ]
        assert followup["parameters"] == {"message": "disk full on /data"}

        # Recorded on the run: notified whom, when, and how it went.
        targets = {d["target"] for d in records}
        assert f"json://127.0.0.1:{http.port}/***" in targets
        assert all(smtp.password not in d["target"] for d in records)
        assert not http.refused, http.refused

        # The dashboard shows the same: on the run's page and in the Automations tab.
        pages = {
            path: httpx.get(
                journey.url + path, headers={"Authorization": f"token {journey.token}"}, timeout=60
            ).text
            for path in (f"nbflows/runs/{run_id}", "nbflows/automations")
        }
        for text in pages.values():
            assert "mailto://bot:***@127.0.0.1" in text and "delivered" in text
            assert smtp.password not in text and http.secret not in text
        assert (
            f"notified <code>json://127.0.0.1:{http.port}/***</code>"
            in pages[f"nbflows/runs/{run_id}"]
        )


def test_late_and_too_long_runs_notify_and_the_long_one_is_cancelled(journey: Journey) -> None:
    with HTTPReceiver() as http:
        journey.start(args=FAST_RETRIES)
        hook = f"http://127.0.0.1:{http.port}/hook"
        journey.env["NBFLOWS_WEBHOOK_SECRET"] = http.secret  # the CLI reads it from here
        # No worker serves docker pools here: its run stays Scheduled and becomes late.
        journey.cli("work-pool", "create", "idle", "--type", "docker", check=True)
        journey.cli("work-pool", "create", "busy", "--type", "process", check=True)
        shutil.copy(DATA / "worker_sleep.ipynb", journey.root / "worker_sleep.ipynb")
        journey.cli("deploy", "notebooks/trivial.ipynb", "--name", "stuck", "--pool", "idle")
        journey.cli("deploy", "notebooks/worker_sleep.ipynb", "--name", "long", "--pool", "busy")
        for rule in (
            ["late", "--late", "2", "--pool", "idle", "--notify", hook],
            ["slow", "--running-longer", "3", "--flow", "worker_sleep", "--notify", hook,
             "--cancel-run"],
            ["unserved", "--no-worker", "2", "--pool", "idle", "--notify", hook],
        ):  # fmt: skip
            journey.cli("automation", "create", *rule, check=True)

        late = ok(journey.http("POST", "deployments/trivial%2Fstuck/runs", json={}), 201)
        long = ok(journey.http("POST", "deployments/worker_sleep%2Flong/runs", json={}), 201)

        journey.wait_for(
            "the long run cancelled by its automation",
            lambda: (
                ok(journey.http("GET", f"flow_runs/{long['id']}"))["state"]["type"] == "CANCELLED"
            ),
        )
        journey.wait_for("three webhooks", lambda: len(http.bodies("/hook")) >= 3)
        time.sleep(3)  # a few more scheduler passes: still one event per (rule, subject)
        events = sorted(
            (b["event"], b.get("run", {}).get("id") or b["work_pool"]["name"])
            for b in http.bodies("/hook")
        )
        assert events == sorted(
            [("late", late["id"]), ("running_too_long", long["id"]), ("no_worker", "idle")]
        ), events
        records = settled(journey, long["id"], 2)
        assert records and {d["action_type"] for d in records} == {"notify", "cancel_run"}
        assert all(d["status"] == "delivered" for d in records), records


def test_a_notification_survives_a_server_killed_right_after_the_failure(
    journey: Journey,
) -> None:
    with SMTPReceiver() as smtp, HTTPReceiver() as http:
        http.status = 503  # the receiver is down: the webhook stays in the outbox
        journey.start(args=FAST_RETRIES)
        deploy_failing(journey)
        journey.cli(
            "automation", "create", "failed", "--on", "failed", "--notify", smtp.url(),
            "--notify", f"http://127.0.0.1:{http.port}/hook", "--secret", http.secret,
            check=True,
        )  # fmt: skip
        run_id = run_and_fail(journey, "lost?")
        journey.wait_for(
            "a refused attempt",
            lambda: any(d["last_error"] for d in notifications(journey, run_id)),
        )
        journey.stop(signal.SIGKILL)  # kill -9, its worker with it
        http.status = 200
        journey.start(args=FAST_RETRIES)

        records = journey.wait_for("both delivered", lambda: settled(journey, run_id, 2))
        time.sleep(3)  # time enough for any repeat to arrive
        assert {d["status"] for d in records} == {"delivered"}, records
        assert len(smtp.messages) == 1
        assert [b["run"]["id"] for b in http.bodies("/hook")] == [run_id]
        webhook = next(d for d in records if d["target"].startswith("http"))
        assert webhook["attempts"] >= 2 and "503" in (http.refused[0] + str(webhook))
