"""The README's terminal journey, every command exactly as README.md writes it.

The commands are read from README.md itself (the fenced `bash` blocks of "The tutorial journey,
from a terminal", the docker subsection left to the docker journey), so this test breaks when
the README and the product part ways. They run in a second terminal of the user who started
`make run` (`jupyter lab` with the default set-up), from the project folder, where
`notebooks/repo_info.ipynb` resolves; the CLI finds the server by itself. `RUN_ID` is what the
user copies from `nbflows flow-run ls`.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from tests.journeys.conftest import Journey
from tests.servers import REPO

pytestmark = pytest.mark.slow

SECTION = "## The tutorial journey, from a terminal"


def readme_commands() -> list[str]:
    """The command lines of the section's bash blocks, in order (its subsections left out)."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION) + len(SECTION)
    end = re.compile(r"^#{2,3} ", re.M).search(text, start)
    section = text[start : end.start() if end else len(text)]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def run(journey: Journey, line: str, run_id: str = "") -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line.replace("RUN_ID", run_id), comments=True)
    assert argv[0] == "nbflows", f"the README's terminal journey runs nbflows only: {line}"
    return journey.cli(*argv[1:])


def test_readme_terminal_journey(journey: Journey) -> None:
    commands = readme_commands()
    # What this test checks, command by command; a command it does not know fails it.
    expected = [
        "nbflows work-pool create my-pool",
        "nbflows work-pool ls",
        "nbflows deploy notebooks/repo_info.ipynb:get_repo_info --name my-first-deployment",
        "nbflows deployment run 'get_repo_info/my-first-deployment'",
        "nbflows flow-run ls",
        "nbflows flow-run logs RUN_ID",
        "nbflows deploy notebooks/repo_info.ipynb --name nightly",
        "nbflows deployment ls",
    ]
    assert len(commands) == len(expected), commands
    for line, start in zip(commands, expected, strict=True):
        assert line.startswith(start), (line, start)

    journey.extra_env["COLUMNS"] = "200"  # a terminal as wide as the README's lines
    journey.start(face="lab")  # `make run`
    # `make run` prints the dashboard's URL with the token masked, as Jupyter prints its own.
    dashboard = f"nbflows dashboard: http://localhost:{journey.port}/nbflows/?token=..."
    journey.wait_for("the dashboard URL in the log", lambda: dashboard in journey.log())
    assert not [
        line for line in journey.log().splitlines() if "nbflows" in line and journey.token in line
    ]

    created = run(journey, commands[0])
    assert created.returncode == 0, created.stderr
    assert "my-pool" in created.stdout and "process" in created.stdout

    listed = run(journey, commands[1])
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "my-pool" in line]
    assert "process" in row

    deployed = run(journey, commands[2])
    assert deployed.returncode == 0, deployed.stderr
    assert "Deployment 'get_repo_info/my-first-deployment' successfully created" in deployed.stdout

    watched = run(journey, commands[3])
    assert watched.returncode == 0, watched.stdout + watched.stderr
    for line in (
        "nteract/papermill repository statistics 🤓:",
        "Stars 🌠 : 5900",
        "Forks 🍴 : 430",
    ):
        assert line in watched.stdout, watched.stdout
    assert "COMPLETED" in watched.stdout.upper()

    runs = run(journey, commands[4])
    assert runs.returncode == 0, runs.stderr
    [api_run] = journey.http("GET", "flow_runs").json()
    assert api_run["state"]["type"] == "COMPLETED"
    [row] = [line for line in runs.stdout.splitlines() if api_run["id"] in line]
    assert "get_repo_info" in row and "my-first-deployment" in row
    # The user copies the run's id from that table.
    run_id = re.search(r"\b[0-9a-f]{32}\b", row)
    assert run_id is not None and run_id.group() == api_run["id"]

    logs = run(journey, commands[5], run_id.group())
    assert logs.returncode == 0, logs.stderr
    assert "nteract/papermill repository statistics 🤓:" in logs.stdout
    assert "Stars 🌠 : 5900" in logs.stdout and "Forks 🍴 : 430" in logs.stdout

    nightly = run(journey, commands[6])
    assert nightly.returncode == 0, nightly.stderr
    assert "Deployment 'repo_info/nightly' successfully created" in nightly.stdout
    assert "cron '0 6 * * *' (Europe/Paris)" in " ".join(nightly.stdout.split())

    deployments = run(journey, commands[7])
    assert deployments.returncode == 0, deployments.stderr
    [row] = [line for line in deployments.stdout.splitlines() if "nightly" in line]
    assert "repo_info" in row and "my-pool" in row
    assert "0 6 * * *" in row and "Europe/Paris" in row
    assert any(
        "get_repo_info" in line and "my-first-deployment" in line
        for line in deployments.stdout.splitlines()
    )
