"""More of nbflows' JupyterLab front end, in Chromium, with the mouse, against JupyterLab started
as `make run` starts it (see test_lab_extension.py for the tutorial itself):

- the "Create work pool" form of the Flows panel (types from the server, its refusals shown);
- a `%%flow` cell's status line, under what the cell printed and displayed;
- a saved notebook with an nbflows widget, opened again in a fresh Lab: the widget's saved view,
  not "Error displaying widget: model not found";
- the deploy dialog's image options for a docker pool: the build's output shown live in the
  dialog, then the deployment made with the built image (needs a Docker engine).

Screenshots go to tests/artifacts/lab-entry-*.png.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import nbformat
import pytest

from tests.docker_support import docker_client, local_base_image, remove_image
from tests.journeys.conftest import Journey
from tests.journeys.test_lab_extension import open_lab
from tests.journeys.test_tutorial_lab import code_cell, run_cell, user_settings
from tests.test_browser import (  # noqa: F401
    browser,
    goto_lab,
    page,
    screenshot,
    wait_for_idle_kernel,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODEL_NOT_FOUND = "model not found"

FLOW_CELL = """\
%%flow shout --log-prints
from IPython.display import HTML, display
print("first printed line")
display(HTML("<b class='shout-html'>displayed by the flow</b>"))
print("last printed line")
"""


def write_notebook(journey: Journey, name: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, journey.root / name)


def flows_panel(page: Any) -> Any:  # noqa: F811
    panel = page.locator("#nbflows-flows-panel")
    if not panel.is_visible():
        page.locator(".jp-SideBar .lm-TabBar-tab[data-id='nbflows-flows-panel']").click()
    panel.wait_for()
    return panel


def test_create_a_work_pool_from_the_flows_panel(journey: Journey, page: Any) -> None:  # noqa: F811
    user_settings(journey)
    journey.start(face="lab")  # `make run`
    goto_lab(page, f"{journey.url}lab?token={journey.token}")
    page.locator(".jp-Launcher").first.wait_for()
    panel = flows_panel(page)
    panel.get_by_role("button", name="Create work pool").click()
    form = panel.get_by_role("form", name="Create work pool")
    form.get_by_label("Pool type").locator("option[value='docker']").wait_for(state="attached")
    kinds = form.get_by_label("Pool type").locator("option").all_inner_texts()
    served = [t["type"] for t in journey.http("GET", "work_pool_types").json()]
    assert kinds == served and "process" in kinds and "docker" in kinds

    # The server's refusals are shown in the form, as the server words them.
    form.get_by_label("Pool name").fill("my pool!")
    form.get_by_label("Pool type").select_option("process")
    form.get_by_role("button", name="Create").click()
    error = form.locator(".nbflows-createPoolError")
    error.get_by_text("name").wait_for()
    form.get_by_label("Pool name").fill("lab-made")
    form.get_by_label("Concurrency limit").fill("-1")
    form.get_by_role("button", name="Create").click()
    error.get_by_text("concurrency_limit").wait_for()
    screenshot(page, "lab-entry-create-pool-refused")
    assert journey.http("GET", "work_pools").json() == []

    form.get_by_label("Concurrency limit").fill("2")
    form.get_by_role("button", name="Create").click()
    item = panel.locator(".nbflows-pool[data-pool='lab-made']")
    item.wait_for()
    assert form.count() == 0  # the form closes once the pool exists
    [pool] = journey.http("GET", "work_pools").json()
    assert (pool["name"], pool["type"], pool["concurrency_limit"]) == ("lab-made", "process", 2)
    screenshot(page, "lab-entry-create-pool")


def test_flow_status_line_under_the_output_and_saved_widgets_reopened(
    journey: Journey,
    page: Any,  # noqa: F811
) -> None:
    user_settings(journey)
    write_notebook(
        journey,
        "shout.ipynb",
        "import nbflows\n%load_ext nbflows",
        FLOW_CELL,
        "import nbflows.widgets\nnbflows.widgets.pool_picker()",
    )
    journey.start(face="lab")
    assert journey.cli("work-pool", "create", "picked-pool", "--type", "process").returncode == 0
    open_lab(journey, page, "shout.ipynb")
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()

    # The status line follows the run to COMPLETED, under everything the cell showed.
    cell = code_cell(page, "%%flow shout")
    line = cell.locator(".nbflows-RunStatus")
    line.locator(".nbflows-state-COMPLETED").wait_for()
    assert "attempt 1" in line.inner_text()
    line_top = line.bounding_box()["y"]
    for shown in ("first printed line", "last printed line"):
        box = cell.locator(".jp-OutputArea-output", has_text=shown).first.bounding_box()
        assert box["y"] + box["height"] <= line_top, f"{shown!r} is below the status line"
    html_box = cell.locator(".shout-html").bounding_box()
    assert html_box["y"] < line_top
    screenshot(page, "lab-entry-status-line")
    line.get_by_role("link", name="show run").click()
    flows_panel(page).locator(".nbflows-runHeader[data-state='COMPLETED']").wait_for()

    # The widget is live while its kernel holds its model.
    picker = code_cell(page, "pool_picker()")
    picker.locator(".widget-dropdown select").wait_for()
    page.keyboard.press("Control+s")
    journey.wait_for(
        "the notebook saved with its outputs",
        lambda: "application/vnd.nbflows.widget+json" in (journey.root / "shout.ipynb").read_text(),
    )
    journey.stop()

    # A fresh Lab (a new server, a new kernel): the saved notebook shows the widget's saved
    # view and the status line, no "model not found".
    journey.start(face="lab", port=journey.port)
    goto_lab(page, f"{journey.url}lab/tree/shout.ipynb?token={journey.token}&reset")
    page.locator(".jp-Notebook").wait_for()
    wait_for_idle_kernel(journey, "shout.ipynb")  # type: ignore[arg-type]
    picker = code_cell(page, "pool_picker()")
    saved = picker.locator(".nbflows-WidgetOutput[data-view='saved'] .nbflows-widgetFallback")
    picker.get_by_text(MODEL_NOT_FOUND).or_(saved.get_by_text("picked-pool")).wait_for()
    code_cell(page, "%%flow shout").locator(".nbflows-RunStatus").wait_for()
    page.wait_for_timeout(1000)  # the widget manager has had its chance to say "not found"
    assert MODEL_NOT_FOUND not in page.locator(".jp-Notebook").inner_text()
    saved.get_by_text("picked-pool").wait_for()
    screenshot(page, "lab-entry-saved-widget-reopened")

    # Run again, the widget is live again.
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name="Select").click())
    run_cell(page, picker)
    picker.locator(".nbflows-WidgetOutput[data-view='live'] .widget-dropdown select").wait_for()


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_deploy_dialog_builds_the_image_for_a_docker_pool(
    journey: Journey,
    page: Any,  # noqa: F811
) -> None:
    engine = docker_client()
    base = os.environ.get("NBFLOWS_TEST_BASE_IMAGE") or local_base_image(engine)
    image = f"lab-built-{uuid.uuid4().hex[:8]}"
    user_settings(journey)
    write_notebook(journey, "report.ipynb", 'print("report")')
    journey.start(face="lab")
    assert journey.cli("work-pool", "create", "boxes", "--type", "docker").returncode == 0
    assert journey.cli("work-pool", "create", "local", "--type", "process").returncode == 0
    open_lab(journey, page, "report.ipynb")
    page.locator(".nbflows-scheduleButton").click()
    dialog = page.locator("#nbflows-deploy-dialog")
    dialog.get_by_text("The whole notebook: 1 cells").wait_for()
    images = dialog.locator("fieldset.nbflows-image")
    dialog.get_by_label("Work pool").select_option("local")
    assert not images.is_visible()  # a process pool runs no image
    dialog.get_by_label("Work pool").select_option("boxes")
    images.wait_for()
    dialog.get_by_label("Deployment name").fill("boxed")
    dialog.get_by_label("Image name").fill("Not A Valid Name")
    images.get_by_role("button", name="Build image").click()
    status = images.locator(".nbflows-buildStatus[data-state='FAILED']")
    status.get_by_text("invalid image name").wait_for()

    dialog.get_by_label("Image name").fill(image)
    dialog.get_by_label("Base image").fill(base)
    assert dialog.get_by_label("Build the image").is_checked()
    assert not dialog.get_by_label("Push the image").is_checked()
    try:
        images.get_by_role("button", name="Build image").click()
        # Lines arrive while the build runs, not all at the end.
        output = images.locator(".nbflows-buildLog")
        output.get_by_text(f"Building {image}").wait_for()
        page.wait_for_function(
            """() => {
                const status = document.querySelector('.nbflows-buildStatus');
                const lines = document.querySelector('.nbflows-buildLog').textContent;
                return status.dataset.state === 'RUNNING' && /^Step \\d+\\/\\d+/m.test(lines);
            }""",
            timeout=600_000,
        )
        screenshot(page, "lab-entry-image-building")
        done = images.locator(".nbflows-buildStatus[data-state='COMPLETED']")
        done.wait_for(timeout=600_000)
        assert image in done.inner_text() and "built" in done.inner_text()
        assert output.inner_text().count("\n") > 3
        screenshot(page, "lab-entry-image-built")
        dialog.get_by_role("button", name="Deploy").click()
        dialog.wait_for(state="detached")
        deployed = journey.http("GET", "deployments/name/report/boxed").json()
        reference = deployed["image"]["reference"]
        assert reference.startswith(f"{image}:") and deployed["image"]["built"]
        assert deployed["image"]["base_image"] == base and not deployed["image"]["pushed"]
        engine.images.get(reference)  # the engine has it
    finally:
        for tagged in engine.images.list(name=image):
            for tag in tagged.tags:
                remove_image(engine, tag)
