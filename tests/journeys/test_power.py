"""Every party gets only the power it needs: a run's kernel holds its run's credential (never the
server's token), a worker credential serves its pools only, and a secret set with the CLI is used
by a run while its value shows nowhere (logs through the API and the CLI, the dashboard, the
executed notebook, `deployment inspect`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import nbformat
import pytest

from tests.journeys.conftest import Journey

pytestmark = pytest.mark.slow

SECRET = "sk_live_9f3b2c7e1a"

SNOOP = """
import json, os, urllib.request
print("ENVIRONMENT " + json.dumps(dict(os.environ), sort_keys=True))
print("the key is " + key)
print("the env key is " + os.environ.get("STRIPE_SK", ""))

def status(method, path, body=None):
    request = urllib.request.Request(
        os.environ["NBFLOWS_API_URL"] + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "token " + os.environ["NBFLOWS_API_TOKEN"],
                 "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code

print("LIST RUNS", status("GET", "flow_runs"))
print("OTHER RUN LOGS", status("POST", f"flow_runs/{other}/logs", {"message": "intruder"}))
print("OWN RUN", status("GET", "flow_runs/" + os.environ["NBFLOWS_FLOW_RUN_ID"]))
"""


def write_snoop_notebook(folder: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                'key = "none"\nother = ""', metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell(SNOOP),
            nbformat.v4.new_code_cell("%load_ext nbflows"),
            nbformat.v4.new_code_cell('%%flow inner\nprint("inner sees " + key)'),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(nb, folder / "snoop.ipynb")


def set_secret(journey: Journey, name: str, value: str) -> subprocess.CompletedProcess[str]:
    """`nbflows secret set NAME` with the value piped on stdin."""
    return subprocess.run(
        [str(Path(journey.env["PATH"].split(":")[0]) / "nbflows"), "secret", "set", name],
        input=value,
        capture_output=True,
        text=True,
        env=journey.env,
        timeout=120,
        check=True,
    )


def test_a_process_run_holds_its_own_credential_and_its_secret_shows_nowhere(
    journey: Journey,
) -> None:
    journey.start()
    write_snoop_notebook(journey.root)
    out = set_secret(journey, "API_KEY", SECRET)
    assert SECRET not in out.stdout + out.stderr
    listed = journey.cli("secret", "ls", check=True).stdout
    assert "API_KEY" in listed and SECRET not in listed

    journey.cli("work-pool", "create", "local", "--type", "process", check=True)
    refused = journey.cli(
        "deploy",
        "notebooks/snoop.ipynb",
        "--name",
        "snoop",
        "--pool",
        "local",
        "--param",
        "key={{ secret.NOPE }}",
    )
    assert refused.returncode != 0 and "NOPE" in refused.stdout + refused.stderr

    journey.cli(
        "deploy",
        "notebooks/snoop.ipynb",
        "--name",
        "snoop",
        "--pool",
        "local",
        "--param",
        "key={{ secret.API_KEY }}",
        "--job-variable",
        'env={"STRIPE_SK": "{{ secret.API_KEY }}"}',
        check=True,
    )
    inspected = journey.cli("deployment", "inspect", "snoop/snoop", "-o", "json", check=True)
    assert "{{ secret.API_KEY }}" in inspected.stdout and SECRET not in inspected.stdout
    dep = journey.http("GET", "deployments/name/snoop/snoop").json()
    bad = journey.http(
        "POST", f"deployments/{dep['id']}/runs", json={"parameters": {"key": "{{ secret.X }}"}}
    )
    assert bad.status_code == 422 and "X" in bad.json()["message"], bad.text

    other = journey.http("POST", "flow_runs", json={"flow_name": "someone-else"}).json()["id"]
    ran = journey.cli(
        "deployment", "run", "snoop/snoop", "--param", f"other={other}", "--watch", timeout=300
    )
    run_id = re.search(r"UUID: (\w+)", ran.stdout).group(1)  # type: ignore[union-attr]
    run = journey.http("GET", f"flow_runs/{run_id}").json()
    assert run["state"]["type"] == "COMPLETED", ran.stdout + ran.stderr + journey.log()

    lines = journey.http("GET", f"flow_runs/{run_id}/logs", params={"limit": 10000}).json()
    text = "\n".join(line["message"] for line in lines["items"])
    environment = json.loads(text.split("ENVIRONMENT ", 1)[1].splitlines()[0])
    assert journey.token not in json.dumps(environment), "the server's token reached the kernel"
    assert environment["NBFLOWS_API_TOKEN"].startswith("nbfr_")
    assert "LIST RUNS 403" in text
    assert "OTHER RUN LOGS 403" in text
    assert "OWN RUN 200" in text
    assert "the key is ********" in text and "the env key is ********" in text
    assert SECRET not in text

    # %%flow inside the deployed notebook is still a child run of it.
    children = journey.http("GET", "flow_runs", params={"parent_run_id": run_id}).json()
    inner = [c for c in children if c["flow_name"] == "inner"]
    assert inner and inner[0]["state"]["type"] == "COMPLETED", children
    inner_logs = journey.http("GET", f"flow_runs/{inner[0]['id']}/logs").json()["items"]
    assert any("inner sees ********" in x["message"] for x in inner_logs), inner_logs

    nowhere = {
        "the CLI's logs": journey.cli("flow-run", "logs", run_id, check=True).stdout,
        "the executed notebook": journey.http("GET", f"flow_runs/{run_id}/notebook").text,
        "the dashboard's run page": httpx.get(
            f"{journey.url}nbflows/runs/{run_id}",
            headers={"Authorization": f"token {journey.token}"},
            timeout=60,
        ).text,
        "the run": journey.http("GET", f"flow_runs/{run_id}").text,
        "deployment inspect": journey.cli("deployment", "inspect", "snoop/snoop").stdout,
        "the server log": journey.log(),
    }
    for where, shown in nowhere.items():
        assert SECRET not in shown, f"the secret's value shows in {where}"
    assert "********" in nowhere["the CLI's logs"]
    assert "the key is" in nowhere["the executed notebook"]


def test_a_worker_credential_serves_its_pools_only(journey: Journey) -> None:
    journey.start()
    for pool in ("pool-a", "pool-b"):
        journey.cli("work-pool", "create", pool, "--type", "process", "--paused", check=True)
    made = journey.cli("worker-token", "create", "--pool", "pool-a", "-o", "json", check=True)
    token = json.loads(made.stdout)["token"]
    listed = journey.cli("worker-token", "ls", check=True).stdout
    assert "pool-a" in listed and token not in listed

    def as_worker(method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"token {token}"}
        return httpx.request(method, journey.api + path, headers=headers, timeout=60, **kwargs)

    claim = {"worker": "w1", "wait": 0}
    assert as_worker("POST", "work_pools/pool-a/claim", json=claim).status_code == 200
    refused = as_worker("POST", "work_pools/pool-b/claim", json=claim)
    assert refused.status_code == 403, refused.text
    assert refused.json()["reason"] == "Forbidden" and "pool-a" in refused.json()["message"]
    beat = as_worker("POST", "work_pools/pool-b/workers/heartbeat", json={"name": "w1"})
    assert beat.status_code == 403
    assert [p["name"] for p in as_worker("GET", "work_pools").json()] == ["pool-a"]
    for method, path in (("GET", "flow_runs"), ("POST", "work_pools"), ("GET", "secrets")):
        assert as_worker(method, path, json={}).status_code == 403, (method, path)

    journey.cli("worker-token", "revoke", "pool-a", check=True)
    assert as_worker("POST", "work_pools/pool-a/claim", json=claim).status_code == 401
