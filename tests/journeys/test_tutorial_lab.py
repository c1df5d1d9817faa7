"""The tutorial notebook in JupyterLab, in Chromium, as a user goes through it.

JupyterLab is started as `make run` starts it (`jupyter lab`, default set-up). The user creates
the pool from a terminal as the notebook says, opens `repo_info.ipynb`, runs all cells (the flow
cells record COMPLETED runs, the deploy cell deploys), edits the flow cell and runs it without
saving, deploys again (the code run is deployed, and the deploy says so), then starts a run of
the deployment from the terminal and watches its log lines arrive in a `run_logs` widget typed
into a new cell. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.journeys.conftest import Journey
from tests.test_browser import (  # noqa: F401
    browser,
    goto_lab,
    page,
    screenshot,
    wait_for_idle_kernel,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EDIT = 'print("Edited in JupyterLab, not saved")'


def user_settings(journey: Journey) -> None:
    """The user's own Lab settings: no news or update prompts over the notebook, and no
    autosave (the edit below must stay unsaved whatever the machine's speed)."""
    settings = journey.home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for plugin, values in (
        ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
        ("docmanager-extension/plugin", {"autosave": False}),
    ):
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def code_cell(page: Any, text: str) -> Any:  # noqa: F811
    return page.locator(".jp-Notebook .jp-CodeCell", has_text=text).first


def run_cell(page: Any, cell: Any) -> None:  # noqa: F811
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def test_tutorial_notebook_in_jupyterlab(journey: Journey, page: Any) -> None:  # noqa: F811
    user_settings(journey)
    journey.start(face="lab")  # `make run`
    dashboard = f"nbflows dashboard: http://localhost:{journey.port}/nbflows/?token=..."
    journey.wait_for("the dashboard URL in the log", lambda: dashboard in journey.log())
    made = journey.cli("work-pool", "create", "my-pool", "--type", "process")
    assert made.returncode == 0, made.stderr
    journey.wait_for(
        "the embedded worker serving my-pool",
        lambda: journey.http("GET", "work_pools/my-pool").json()["workers_online"],
    )
    saved = (journey.root / "repo_info.ipynb").read_text()

    goto_lab(page, f"{journey.url}lab/tree/repo_info.ipynb?token={journey.token}")
    page.locator(".jp-Notebook").wait_for()
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name="Select").click())
    wait_for_idle_kernel(journey, "repo_info.ipynb")  # type: ignore[arg-type]
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()

    # The flow cells show their output as plain cells would, and record COMPLETED runs.
    flow = code_cell(page, "%%flow get_repo_info")
    flow.locator(".jp-OutputArea").get_by_text("Stars 🌠 : 11600").wait_for()
    code_cell(page, "%%flow summarize_repos").get_by_text(
        "5 repositories, 50900 stars, 13780 forks"
    ).wait_for()
    deploy = code_cell(page, "get_repo_info.deploy(")
    output = deploy.locator(".jp-OutputArea")
    output.get_by_text(
        re.compile(r"Deployed 'get_repo_info/my-first-deployment' \(version 1\)")
    ).wait_for()
    output.get_by_text(re.compile("the same as the saved file")).wait_for()
    for name in ("get_repo_info", "summarize_repos"):
        [run] = journey.http("GET", "flow_runs", params={"flow_name": name}).json()
        assert (run["kind"], run["state"]["type"]) == ("interactive", "COMPLETED"), run
    screenshot(page, "lab-tutorial-run-all")

    # The user adds a line to the flow cell and runs it, saves nothing, and deploys again:
    # what is deployed is the code run, and the deploy says the saved file differs.
    flow.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type(EDIT)
    page.keyboard.press("Shift+Enter")
    flow.locator(".jp-OutputArea").get_by_text("Edited in JupyterLab, not saved").wait_for()
    run_cell(page, deploy)
    output.get_by_text(re.compile(r"\(version 2\)")).wait_for()
    said = output.inner_text()
    assert "the saved file differs (not saved since)" in said and EDIT in said, said
    deployment = journey.http("GET", "deployments/name/get_repo_info/my-first-deployment").json()
    frozen = journey.http("GET", f"deployments/{deployment['id']}/notebook").json()
    assert "".join(frozen["cells"][-1]["source"]).endswith(EDIT)
    assert (journey.root / "repo_info.ipynb").read_text() == saved
    output.scroll_into_view_if_needed()
    screenshot(page, "lab-tutorial-deployed-as-run")

    # A run started from the terminal while the pool is paused, watched from a new cell.
    assert journey.cli("work-pool", "pause", "my-pool").returncode == 0
    started = journey.cli(
        "deployment",
        "run",
        "get_repo_info/my-first-deployment",
        "--param",
        "repo_name=nteract/papermill",
    )
    assert started.returncode == 0, started.stderr
    [run] = journey.http("GET", "flow_runs", params={"deployment_id": deployment["id"]}).json()
    deploy.locator(".jp-InputPrompt").click()  # select the cell (command mode)
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.type(f'nbflows.widgets.run_logs("{run["id"]}")')
    page.keyboard.press("Shift+Enter")
    widget = code_cell(page, "nbflows.widgets.run_logs(")
    widget.locator(".nbflows-state", has_text="Scheduled").wait_for()
    logs = widget.locator(".nbflows-logs")
    assert "repository statistics" not in logs.inner_text()
    screenshot(page, "lab-tutorial-run-waiting")

    # The pool resumes: the worker runs it and the widget shows its lines as they come.
    assert journey.cli("work-pool", "resume", "my-pool").returncode == 0
    logs.get_by_text("nteract/papermill repository statistics 🤓:").wait_for()
    logs.get_by_text("Edited in JupyterLab, not saved").wait_for()
    widget.locator(".nbflows-state", has_text="Completed").wait_for()
    assert "Forks 🍴 : 430" in logs.inner_text()
    screenshot(page, "lab-tutorial-run-completed")
