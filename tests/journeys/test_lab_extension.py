"""nbflows' JupyterLab extension, in Chromium, used with the mouse from a clean Lab.

JupyterLab is started as `make run` starts it, with the extension as the package installs it
(prebuilt, from share/jupyter/labextensions). The user runs the tutorial notebook (each %%flow
cell shows its status line), schedules it from the notebook toolbar's "Schedule" button (the
dialog saves the notebook first, lists the cells the deployment holds, checks the schedule and
shows its next times), runs the deployment from the Flows panel with a parameter, watches its
logs arrive, opens the executed notebook read-only, deploys a second notebook from the file
browser's context menu and cancels its run. Screenshots go to tests/artifacts/lab-ext-*.png.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.journeys.conftest import Journey
from tests.journeys.test_tutorial_lab import code_cell, user_settings
from tests.test_browser import (  # noqa: F401
    browser,
    goto_lab,
    page,
    screenshot,
    wait_for_idle_kernel,
    write_gated_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_lab(journey: Journey, page: Any, notebook: str) -> None:  # noqa: F811
    goto_lab(page, f"{journey.url}lab/tree/{notebook}?token={journey.token}")
    page.locator(".jp-Notebook").wait_for()
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name="Select").click())
    wait_for_idle_kernel(journey, notebook)  # type: ignore[arg-type]
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()


def test_schedule_run_watch_open_and_cancel_from_jupyterlab(
    journey: Journey,
    page: Any,  # noqa: F811
) -> None:
    user_settings(journey)
    write_gated_notebook(journey.root, "gated.ipynb")
    journey.start(face="lab")  # `make run`
    assert journey.cli("work-pool", "create", "my-pool", "--type", "process").returncode == 0
    journey.wait_for(
        "the embedded worker serving my-pool",
        lambda: journey.http("GET", "work_pools/my-pool").json()["workers_online"],
    )
    open_lab(journey, page, "repo_info.ipynb")
    status_bar = page.locator(".nbflows-StatusItem")
    status_bar.get_by_text(re.compile(r"Flows: 0 running · 0 failed \(24 h\)")).wait_for()

    # Run all: each %%flow cell shows a status line that follows its run to COMPLETED.
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    line = code_cell(page, "%%flow get_repo_info").locator(".nbflows-RunStatus")
    line.locator(".nbflows-state-COMPLETED").wait_for()
    assert "attempt 1" in line.inner_text()
    code_cell(page, "get_repo_info.deploy(").get_by_text(re.compile("Deployed")).wait_for()
    screenshot(page, "lab-ext-status-line")

    # The notebook has unsaved changes (the outputs): "Schedule" saves it first and says so.
    page.locator(".nbflows-scheduleButton").click()
    dialog = page.locator("#nbflows-deploy-dialog")
    dialog.get_by_text("it was saved first").wait_for()
    assert page.locator(".jp-mod-dirty").count() == 0
    cells = dialog.locator(".nbflows-cells")
    cells.get_by_text('Flow "get_repo_info": 4 cells extracted').wait_for()
    assert dialog.get_by_label("Flow", exact=True).input_value() == "get_repo_info"
    assert "summarize_repos" not in cells.inner_text()
    dialog.get_by_label("Deployment name").fill("from-the-lab")
    dialog.get_by_label("Work pool").select_option("my-pool")
    dialog.locator(".nbflows-poolInfo").get_by_text(re.compile("READY · 1 worker")).wait_for()
    dialog.get_by_label("Schedule kind").select_option("cron")
    schedule, preview = (
        dialog.get_by_label("Schedule expression"),
        dialog.locator(".nbflows-schedulePreview"),
    )
    schedule.fill("0 25 * * *")
    preview.get_by_text(re.compile("hour")).wait_for()  # the server's own message
    assert "nbflows-invalid" in (preview.get_attribute("class") or "")
    schedule.fill("0 6 * * *")
    dialog.get_by_label("Time zone").fill("Europe/Paris")
    preview.locator("li").nth(4).wait_for()
    assert preview.locator("li").count() == 5
    assert all(t.endswith(" 06:00") for t in preview.locator("li").all_inner_texts())
    dialog.get_by_label("Parameter repo_name").fill("nteract/papermill")
    dialog.get_by_text("✓ parameters valid").wait_for()
    screenshot(page, "lab-ext-deploy-dialog")
    dialog.get_by_role("button", name="Deploy").click()
    dialog.wait_for(state="detached")
    deployed = journey.http("GET", "deployments/name/get_repo_info/from-the-lab").json()
    assert deployed["kind"] == "cell" and deployed["parameters"] == {
        "repo_name": "nteract/papermill"
    }
    [spec] = deployed["schedules"]
    assert (spec["cron"], spec["timezone"]) == ("0 6 * * *", "Europe/Paris")

    # The Flows panel shows the deployment; "Run now" with a parameter; logs arrive live.
    panel = page.locator("#nbflows-flows-panel")
    item = panel.locator(".nbflows-deployment[data-deployment='get_repo_info/from-the-lab']")
    item.get_by_text("next:").wait_for()
    item.get_by_role("button", name="Run now").click()
    run_dialog = page.locator(".jp-Dialog", has_text="Run get_repo_info/from-the-lab now")
    run_dialog.get_by_label("Parameter repo_name").fill("jupyterlab/jupyterlab")
    run_dialog.get_by_role("button", name="Run").click()
    logs = panel.locator(".nbflows-runView .nbflows-runLogs")
    logs.get_by_text("jupyterlab/jupyterlab repository statistics").wait_for()
    panel.locator(".nbflows-runHeader[data-state='COMPLETED']").wait_for()
    page.locator(".jp-toast-message", has_text="completed").first.wait_for()
    screenshot(page, "lab-ext-run-logs")

    # The executed notebook opens in the Lab, read-only.
    panel.get_by_role("button", name="Open executed notebook").click()
    executed = page.locator(".nbflows-executedNotebook")
    executed.get_by_text("jupyterlab/jupyterlab repository statistics").first.wait_for()
    tab = page.locator(".lm-TabBar-tab", has_text="(executed, read-only)")
    tab.wait_for()
    executed.get_by_text("notebook is read-only").wait_for()
    executed.locator(".cm-editor.jp-mod-readOnly").first.wait_for()
    assert executed.locator(".cm-editor:not(.jp-mod-readOnly)").count() == 0
    screenshot(page, "lab-ext-executed-notebook")

    # A second notebook, deployed from the file browser's context menu, run, then cancelled.
    if not page.locator("#filebrowser").is_visible():
        page.locator(".jp-SideBar [data-id='filebrowser']").click()
    page.locator(".jp-DirListing-item", has_text="gated.ipynb").click(button="right")
    page.locator(".lm-Menu-item", has_text="Deploy notebook…").click()
    dialog.wait_for()
    dialog.get_by_text("The whole notebook: 2 cells").wait_for()
    dialog.get_by_label("Deployment name").fill("gate")
    dialog.get_by_label("Work pool").select_option("my-pool")
    dialog.get_by_role("button", name="Deploy").click()
    dialog.wait_for(state="detached")
    item = panel.locator(".nbflows-deployment[data-deployment='gated/gate']")
    item.get_by_role("button", name="Run now").click()
    page.locator(".jp-Dialog", has_text="Run gated/gate now").get_by_role(
        "button", name="Run"
    ).click()
    logs.get_by_text("hello: first line").wait_for()
    panel.locator(".nbflows-runHeader[data-state='RUNNING']").wait_for()
    panel.get_by_role("button", name="Cancel", exact=True).click()
    confirm = page.locator(".jp-Dialog", has_text="Cancel this run?")
    screenshot(page, "lab-ext-cancel-confirm")
    confirm.get_by_role("button", name="Cancel run").click()
    panel.locator(".nbflows-runHeader[data-state='CANCELLED']").wait_for()
    [run] = journey.http("GET", "flow_runs", params={"flow_name": "gated"}).json()
    assert run["state"]["type"] == "CANCELLED"
    panel.get_by_label("Filter by state").select_option("CANCELLED")
    panel.locator(f".nbflows-run[data-run='{run['id']}']").wait_for()
    expect(panel.locator(".nbflows-run")).to_have_count(1)  # the filter applied
    screenshot(page, "lab-ext-cancelled")

    # Retry: a failed run (an unknown repository) gets a second attempt, in the same view.
    panel.get_by_label("Filter by state").select_option("")
    item = panel.locator(".nbflows-deployment[data-deployment='get_repo_info/from-the-lab']")
    item.get_by_role("button", name="Run now").click()
    run_dialog.get_by_label("Parameter repo_name").fill("nobody/nothing")
    run_dialog.get_by_role("button", name="Run").click()
    failed = panel.locator(".nbflows-runHeader[data-state='FAILED']")
    failed.get_by_text("attempt 1").wait_for()
    logs.get_by_text("unknown repository 'nobody/nothing'").first.wait_for()
    failed.get_by_role("button", name="Retry").click()
    failed.get_by_text("attempt 2").wait_for()
    screenshot(page, "lab-ext-retried")

    # The command palette lists nbflows' commands; the launcher's tile opens the dashboard.
    page.keyboard.press("Control+Shift+C")
    palette = page.locator("#command-palette")
    palette.locator("input").fill("nbflows")
    palette.get_by_text("Show the Flows panel").wait_for()
    palette.get_by_text("Schedule / deploy this notebook…").wait_for()
    screenshot(page, "lab-ext-palette")
    page.keyboard.press("Escape")
    page.locator(".lm-TabBar-addButton:not(.lm-mod-hidden)").first.click()
    page.locator(".jp-LauncherCard", has_text="nbflows Dashboard").click()
    frame = page.frame_locator(".jp-MainAreaWidget iframe").first
    frame.get_by_text("Work Pools").first.wait_for()
    screenshot(page, "lab-ext-dashboard-tab")
