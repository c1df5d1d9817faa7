"""Parameters journey: a user deploys notebooks with the CLI and runs them with parameters.

One server, started as the README starts it (`nbflows server`, default SQLite store), serves the
whole module; each test is one step a user takes in a second terminal: `nbflows deploy ... --pool
P`, `nbflows deployment run ... --param ... --watch`. The notebooks are tests/data/params_*.ipynb:
a Python one whose parameters cell computes defaults (a date, `os.path.join`, a tuple) next to
JSON-typed ones, a bash one and an R one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.journeys.conftest import Journey, make_journey
from tests.kernel_support import require_kernel

DATA = Path(__file__).resolve().parents[1] / "data"
POOL = "params-pool"
COMPUTED = [
    "start = datetime.date(2024, 1, 1) (date)",
    "out = 'results/report.csv' (str)",
    "pair = (1, 2) (tuple)",
]

# One server for the module: keep its tests on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("parameters-journey")]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    """A user's machine with the test notebooks in their notebooks folder, the server started
    as the README says, and a process pool."""
    journey = make_journey(tmp_path_factory.mktemp("parameters-journey"))
    for name in ("params_python.ipynb", "params_bash.ipynb", "params_r.ipynb"):
        shutil.copy(DATA / name, journey.root / name)
    try:
        journey.start()
        journey.cli("work-pool", "create", POOL, "--type", "process", check=True)
        yield journey
    finally:
        journey.stop()


def deploy(user: Journey, notebook: str, name: str, *options: str) -> str:
    """`nbflows deploy notebooks/NOTEBOOK --name NAME --pool P ...`; the deployment's full name."""
    user.cli("deploy", f"notebooks/{notebook}", "--name", name, "--pool", POOL, *options,
             check=True)  # fmt: skip
    return f"{Path(notebook).stem}/{name}"


def run_and_watch(user: Journey, ref: str, *params: str) -> str:
    """`nbflows deployment run REF --param ... --watch`: must exit 0 (COMPLETED); its output."""
    args = [item for param in params for item in ("--param", param)]
    done = user.cli("deployment", "run", ref, *args, "--watch", check=True)
    assert "COMPLETED" in done.stdout, done.stdout
    return done.stdout


def printed_lines(output: str) -> list[str]:
    """The lines of the CLI's output, without table borders and indentation."""
    return [line.strip(" │|") for line in output.splitlines()]


def test_computed_defaults_are_kept_when_the_run_does_not_set_them(user: Journey) -> None:
    ref = deploy(user, "params_python.ipynb", "computed")
    output = run_and_watch(user, ref)
    for line in [*COMPUTED, "n = 3 (int)", "options = {'depth': 1} (dict)"]:
        assert line in output, output
    assert "None" not in output, output


def test_complex_parameters_reach_the_notebook(user: Journey) -> None:
    ref = deploy(user, "params_python.ipynb", "complex", "--param", "n=4")
    options = {"depth": 3, "filters": [{"field": "x", "in": [1, 2]}], "on": True}
    output = run_and_watch(user, ref, f"options={json.dumps(options)}", 'labels=[1, [2, "three"]]')
    for line in [
        *COMPUTED,
        "n = 4 (int)",  # the deployment's value
        f"options = {options!r} (dict)",
        "labels = [1, [2, 'three']] (list)",
    ]:
        assert line in output, output


@pytest.mark.parametrize(
    ("kernel", "notebook", "params", "printed"),
    [
        pytest.param(
            "python3",
            "params_python.ipynb",
            ["n=7", 'labels=["x y"]'],
            "labels = ['x y'] (list)",
            id="python",
        ),
        pytest.param(
            "bash",
            "params_bash.ipynb",
            ["greeting=hi there", "count=3", 'words=["a", "b"]'],
            "greeting=hi there count=3 words=a b run=",
            id="bash",
        ),
        pytest.param(
            "ir",
            "params_r.ipynb",
            ["greeting=hi there", "count=3", "values=[1, 2, 4]"],
            "greeting=hi there count=3 total=7 run=",
            id="R",
        ),
    ],
)
def test_each_kernel_language_runs_with_parameters(
    user: Journey, kernel: str, notebook: str, params: list[str], printed: str
) -> None:
    require_kernel(kernel)
    ref = deploy(user, notebook, f"lang-{kernel}")
    output = run_and_watch(user, ref, *params)
    [line] = [x for x in printed_lines(output) if printed in x]
    if kernel != "python3":
        # The run's id reached the kernel's environment (given at launch).
        run_id = line.rsplit("run=", 1)[1].strip()
        assert len(run_id) >= 8, line
        assert run_id in output.split(printed)[0], output  # the id the CLI printed on creation


def test_a_scheduled_run_keeps_the_computed_defaults(user: Journey) -> None:
    ref = deploy(user, "params_python.ipynb", "every-10s", "--interval", "10")

    def completed_run() -> dict[str, Any] | None:
        listed = user.cli("flow-run", "ls", "--deployment", ref, "--output", "json",
                          *("--state", "COMPLETED", "--state", "FAILED", "--state", "CRASHED"),
                          check=True)  # fmt: skip
        ended = json.loads(listed.stdout)
        assert all(r["state"]["type"] == "COMPLETED" for r in ended), ended
        return ended[0] if ended else None

    run = user.wait_for("a scheduled run of the every-10s deployment to complete", completed_run,
                        timeout=120, every=1)  # fmt: skip
    assert "auto-scheduled" in run["tags"]
    logs = user.cli("flow-run", "logs", run["id"], check=True).stdout
    for line in [*COMPUTED, "n = 3 (int)"]:
        assert line in logs, logs
