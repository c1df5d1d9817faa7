"""Deploying again, from the CLI against a real server: what is not given is kept, the output
says what changed, and a deployment moves to another pool only when asked (issue 10, defect 17)."""

from __future__ import annotations

import time

import pytest

from .servers import Server

pytestmark = pytest.mark.slow

ENTRY = "repo_info.ipynb:get_repo_info"


def deploy(server: Server, *args: str) -> tuple[int, str]:
    done = server.cli("deploy", ENTRY, "--name", "nightly", *args)
    return done.returncode, done.stdout + done.stderr


def test_redeploy_keeps_what_is_not_given_and_says_what_changed(server: Server) -> None:
    for pool in ("my-pool", "my-other-pool"):
        assert server.cli("work-pool", "create", pool, "--type", "process").returncode == 0
    code, said = deploy(
        server,
        "--pool",
        "my-pool",
        "--cron",
        "0 6 * * *",
        "--timezone",
        "Europe/Paris",
        "--param",
        "repo_name=nteract/papermill",
        "--tag",
        "nightly",
    )
    assert code == 0, said
    client = server.client()
    first = client.read_deployment("get_repo_info/nightly")

    # Deployed again without --cron, --param or --tag: all kept, and said.
    code, said = deploy(server, "--pool", "my-pool")
    assert code == 0, said
    again = client.read_deployment("get_repo_info/nightly")
    assert again["version"] == 2
    assert [(s["cron"], s["timezone"]) for s in again["schedules"]] == [
        ("0 6 * * *", "Europe/Paris")
    ]
    assert again["parameters"] == {"repo_name": "nteract/papermill"}
    assert again["tags"] == ["nightly"]
    assert [s["id"] for s in again["schedules"]] == [s["id"] for s in first["schedules"]]
    assert "Nothing changed since version 1." in said, said
    assert "Schedules: cron '0 6 * * *' (Europe/Paris)" in " ".join(said.split()), said

    # What is given changes, and the output lists each change.
    code, said = deploy(server, "--pool", "my-pool", "--param", "repo_name=jupyter/notebook")
    assert code == 0, said
    assert "Changed since version 2:" in said, said
    assert 'parameters: {"repo_name": "nteract/papermill"} → {"repo_name": "jupyter/notebook"}' in (
        said
    ), said

    # Another pool: refused, nothing changed, and the message says how to move it on purpose.
    code, said = deploy(server, "--pool", "my-other-pool")
    assert code != 0
    assert "runs on work pool 'my-pool'" in said and "--move-pool" in said, said
    assert "Traceback" not in said
    kept = client.read_deployment("get_repo_info/nightly")
    assert (kept["work_pool_name"], kept["version"]) == ("my-pool", 3)

    code, said = deploy(server, "--pool", "my-other-pool", "--move-pool")
    assert code == 0, said
    assert "work pool: my-pool → my-other-pool" in said, said
    moved = client.read_deployment("get_repo_info/nightly")
    assert moved["work_pool_name"] == "my-other-pool" and moved["schedules"]
    # Its scheduled runs are made again for the new pool; none is left on the old one.
    deadline = time.monotonic() + 60
    while not client.list_flow_runs(work_pool_name="my-other-pool", state="SCHEDULED"):
        assert time.monotonic() < deadline, "no scheduled run on the new pool"
        time.sleep(0.2)
    assert client.list_flow_runs(work_pool_name="my-pool", state="SCHEDULED") == []

    # --no-schedule removes the schedules, and says so.
    code, said = deploy(server, "--pool", "my-other-pool", "--no-schedule")
    assert code == 0, said
    assert client.read_deployment("get_repo_info/nightly")["schedules"] == []
    assert "schedules: cron '0 6 * * *' (Europe/Paris) → none" in said, said
    client.close()
