"""The dashboard and the notebook widgets in headless Chromium, against real servers.

Chromium comes from Debian (`/usr/bin/chromium`); Playwright drives it. Screenshots go to
`tests/artifacts/` for a person to look at.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from .conftest import Server, start_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Playwright's own waits (ms): a safety limit, not a timing assertion.
LIMIT = 90_000

# A whole-notebook flow that prints a line, then waits for the test to open a gate (a file in
# its folder) before printing the next: the test sees lines arrive one at a time, whatever the
# machine's speed.
GATED_PARAMETERS = 'greeting = "hello"'
GATED_BODY = """\
import pathlib, time
print(f"{greeting}: first line", flush=True)
while not pathlib.Path("gate").exists():
    time.sleep(0.05)
print(f"{greeting}: after the gate", flush=True)
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package to run browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(LIMIT)
    tab = context.new_page()
    failed: list[str] = []
    tab.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
    failures = request.session.testsfailed
    try:
        yield tab
    finally:
        if request.session.testsfailed > failures:  # what the page showed when the test failed
            screenshot(tab, f"{request.node.name}-failed")
            print("requests the page saw fail:", *failed or ["none"], sep="\n  ")
        context.close()


#: True once JupyterLab has applied its theme, or has said it could not load it.
THEME_SETTLED = """() => document.body.dataset.jpThemeName !== undefined ||
    [...document.querySelectorAll('.jp-Dialog')].some(
        d => d.textContent.includes('Error Loading Theme'))"""


def goto_lab(page: Any, url: str) -> None:
    """Open a JupyterLab page and wait until its theme is applied. On a loaded machine Chromium
    once failed to load the Lab's own theme stylesheet (the server logged no error), leaving
    an unstyled page under an error dialog: such a page is loaded again, twice at most."""
    for attempt in range(3):
        page.goto(url)
        page.wait_for_function(THEME_SETTLED)
        if page.evaluate("document.body.dataset.jpThemeName !== undefined"):
            return
        print(f"JupyterLab could not load its theme (load {attempt + 1}); loading the page again")
    raise AssertionError(f"JupyterLab could not load its theme in 3 loads of {url}")


def screenshot(tab: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def write_gated_notebook(folder: Path, name: str = "gated.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
    parameters = nbformat.v4.new_code_cell(GATED_PARAMETERS)
    parameters.metadata.tags = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(GATED_BODY)]
    path = folder / name
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------------------------
# The dashboard


def test_dashboard_pools_run_now_and_the_run_page(server: Server, page: Any) -> None:
    made = server.cli("work-pool", "create", "my-pool", "--type", "process")
    assert made.returncode == 0, made.stderr
    write_gated_notebook(server.root)
    client = server.client()
    client.deploy(path="gated.ipynb", name="on-demand", work_pool_name="my-pool")
    deadline = time.monotonic() + 60
    while not client.read_work_pool("my-pool")["workers_online"]:  # the embedded worker
        assert time.monotonic() < deadline, "the embedded worker did not come online"
        time.sleep(0.1)

    # Work Pools: the pool made from the CLI (the token logs the browser in).
    page.goto(f"{server.url}nbflows/?token={server.token}")
    row = page.locator('tr[data-pool="my-pool"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["my-pool", "process", "● ready", "0 running / no limit"]
    assert cells[4].startswith("default") and "embedded-" in cells[5]
    screenshot(page, "dashboard-work-pools")

    # Deployments: pause and resume, then "Run now" with a parameter.
    page.get_by_role("link", name="Deployments").click()
    deployment = page.locator('tr[data-deployment="gated/on-demand"]')
    deployment.get_by_role("button", name="Pause").click()
    deployment.get_by_role("button", name="Resume").wait_for()
    assert client.read_deployment("gated/on-demand")["paused"] is True
    deployment.get_by_role("button", name="Resume").click()
    deployment.get_by_role("button", name="Pause").wait_for()
    assert client.read_deployment("gated/on-demand")["paused"] is False

    deployment.locator("summary", has_text="Run now").click()
    deployment.locator('input[name="greeting"]').fill("bonjour")
    screenshot(page, "dashboard-deployments-run-now")
    deployment.get_by_role("button", name="Start run").click()

    # The run's page follows its logs live.
    page.wait_for_url("**/nbflows/runs/*")
    run_id = page.url.rstrip("/").rsplit("/", 1)[1]
    logs = page.locator("#logs")
    logs.get_by_text("bonjour: first line").wait_for()
    assert "after the gate" not in logs.inner_text()
    assert client.read_flow_run(run_id)["parameters"] == {"greeting": "bonjour"}
    screenshot(page, "dashboard-run-live")
    (server.root / "gate").touch()
    logs.get_by_text("bonjour: after the gate").wait_for()
    page.locator("#run-state .state-completed").wait_for()
    frame = page.frame_locator("iframe.notebook")
    frame.get_by_text("bonjour: after the gate").wait_for()
    screenshot(page, "dashboard-run-completed")

    # Flow Runs lists it, and filters by state.
    page.get_by_role("link", name="Flow Runs").click()
    assert page.locator(f'tr[data-run="{run_id}"] .state-completed').count() == 1
    screenshot(page, "dashboard-flow-runs")
    page.select_option('select[name="state"]', "FAILED")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("No flow runs match these filters.").wait_for()
    client.close()


# --------------------------------------------------------------------------------------------
# JupyterLab


def start_lab(tmp: Path) -> Server:
    """`jupyter lab` with the nbflows extension, as `start_server` starts `jupyter server`."""
    # Lab settings of the test's own: no "get Jupyter news?" prompt over the notebook.
    settings = tmp / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    return start_server(
        tmp,
        module="jupyterlab",
        extra_args=[
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={tmp / 'lab-workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Server]:
    server = start_lab(tmp_path)
    try:
        yield server
    finally:
        server.stop()


WIDGETS_NOTEBOOK_CELLS = [
    "import nbflows.widgets\npicker = nbflows.widgets.pool_picker()\npicker",
    "from nbflows.client.rest import run_deployment\n"
    'run = run_deployment("gated/live", parameters={"greeting": "from lab"}, timeout=0)\n'
    "logs = nbflows.widgets.run_logs(run)\nlogs",
    # Keeps the kernel busy until the run is over: the log widget must move meanwhile.
    "final = logs.wait(120)\nprint('final state:', final['state']['type'])",
]


def wait_for_idle_kernel(lab: Server, notebook: str, timeout: float = 90) -> None:
    """Until the notebook's session has a started, idle kernel (as Jupyter's API says)."""
    headers = {"Authorization": f"token {lab.token}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = httpx.get(f"{lab.url}api/sessions", headers=headers, timeout=30).json()
        states = [
            (s.get("kernel") or {}).get("execution_state")
            for s in sessions
            if s["path"] == notebook
        ]
        if "idle" in states:
            return
        time.sleep(0.1)
    raise AssertionError(f"no idle kernel for {notebook} after {timeout} s:\n{lab.log()}")


def test_jupyterlab_pool_picker_and_live_run_logs(lab: Server, page: Any) -> None:
    client = lab.client()
    client.create_work_pool("lab-pool", "process", description="runs on this machine")
    client.create_work_pool("docker-pool", "docker")
    write_gated_notebook(lab.root)
    client.deploy(path="gated.ipynb", name="live", work_pool_name="lab-pool")
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in WIDGETS_NOTEBOOK_CELLS]
    nbformat.write(nb, lab.root / "widgets.ipynb")
    deadline = time.monotonic() + 60
    while not client.read_work_pool("lab-pool")["workers_online"]:  # the embedded worker
        assert time.monotonic() < deadline, "the embedded worker did not come online"
        time.sleep(0.1)

    goto_lab(page, f"{lab.url}lab/tree/widgets.ipynb?token={lab.token}")
    page.locator(".jp-Notebook").wait_for()
    # Lab asks which kernel to use when cells run before its session has one: say the default.
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name="Select").click())
    wait_for_idle_kernel(lab, "widgets.ipynb")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()

    # The picker lists the server's pools with their type and status.
    select = page.locator(".widget-dropdown select").first
    select.wait_for()
    options = [o.replace("\xa0", " ") for o in select.locator("option").all_inner_texts()]
    assert options == ["docker-pool — docker, no worker", "lab-pool — process, ready"]
    # The pool chosen first is the one a worker serves.
    assert select.input_value() == "lab-pool — process, ready"
    page.get_by_text("runs on this machine").wait_for()

    # The log widget shows the first line while the run waits at the gate, the kernel busy.
    logs = page.locator(".nbflows-logs")
    logs.get_by_text("from lab: first line").wait_for()
    assert "after the gate" not in logs.inner_text()
    assert page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count() == 1
    screenshot(page, "lab-widgets-live")

    (lab.root / "gate").touch()
    logs.get_by_text("from lab: after the gate").wait_for()
    page.locator(".nbflows-state", has_text="Completed").wait_for()
    page.get_by_text("final state: COMPLETED").wait_for()

    screenshot(page, "lab-widgets-completed")

    # Choosing another pool shows what it is. (The kernel handles widget events between cells:
    # while a cell runs, only the kernel's own updates reach the page.)
    select.select_option(value="docker-pool — docker, no worker")
    page.locator(".widget-html-content", has_text="docker-pool · docker · ● no worker").wait_for()
    client.close()
