"""nbflows.widgets driven in Python against a real server (the `server`/`bare_server` fixtures).

Widgets are built with `client=server.client()` and operated as a user would (choosing values,
clicking buttons); assertions read their traits and the HTML they render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from traitlets import TraitError

import nbflows.widgets as nbw
from nbflows.client.rest import Client

from .conftest import Server, free_port
from .kernel_support import ipython_shell
from .servers import isolate_from_servers
from .waiting import wait_for


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No Jupyter server of this user is discovered unless a test says so.
    isolate_from_servers(monkeypatch, tmp_path / "no-runtime")


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as c:
        yield c


def write_notebook(path: Path, parameters: str, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata.tags = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------------------------
# pool_picker


def test_pool_picker_lists_pools_with_type_status_queues_and_filters_by_type(client):
    client.create_work_pool("etl", "process", description="nightly ETL")
    client.create_work_queue("etl", "urgent", priority=1)
    client.create_work_pool("images", "docker")
    client.create_work_pool("frozen", "process", paused=True)

    picker = nbw.pool_picker(client=client)

    assert [value for _, value in picker.dropdown.options] == ["etl", "frozen", "images"]
    labels = dict((v, label) for label, v in picker.dropdown.options)
    assert labels["images"] == "images — docker, no worker"
    assert labels["frozen"] == "frozen — process, paused"
    assert picker.value == "etl"
    assert "<b>etl</b> · process" in picker.info.value
    assert "2 queues (" in picker.info.value and "urgent" in picker.info.value
    assert "0 running" in picker.info.value
    assert "nightly ETL" in picker.info.value

    picker.dropdown.value = "images"  # the user picks another pool
    assert picker.value == "images"
    assert "● no worker" in picker.info.value and "1 queue (default)" in picker.info.value
    assert "0 workers online" in picker.info.value
    picker.value = "frozen"  # or the code does
    assert picker.dropdown.value == "frozen"
    assert "● paused" in picker.info.value
    with pytest.raises(TraitError, match="no work pool 'nope' here; pools: etl, frozen, images"):
        picker.value = "nope"

    docker_only = nbw.pool_picker(type="docker", client=client)
    assert [value for _, value in docker_only.dropdown.options] == ["images"]
    assert docker_only.value == "images"

    none_of_that_type = nbw.pool_picker(type="kubernetes", client=client)
    assert none_of_that_type.value is None
    assert none_of_that_type.dropdown.disabled
    assert "No kubernetes work pools yet" in none_of_that_type.info.value


def test_pool_picker_refresh_picks_up_a_new_pool_and_keeps_the_choice(server, client):
    client.create_work_pool("alpha", "process")
    picker = nbw.pool_picker(client=client)
    assert picker.value == "alpha"
    assert [v for _, v in picker.dropdown.options] == ["alpha"]

    created = server.cli("work-pool", "create", "beta", "--type", "docker")
    assert created.returncode == 0, created.stderr
    picker.refresh_button.click()

    assert [v for _, v in picker.dropdown.options] == ["alpha", "beta"]
    assert picker.value == "alpha"
    assert [p["name"] for p in picker.pools] == ["alpha", "beta"]

    picker.value = "beta"
    client.delete_work_pool("beta")
    picker.refresh()
    assert picker.value == "alpha"  # the chosen pool is gone: the first one is chosen


def test_pool_picker_first_chooses_a_pool_a_worker_serves(client):
    client.create_work_pool("a-docker", "docker")  # no worker serves it here
    client.create_work_pool("z-local", "process")  # the embedded worker does
    wait_for(lambda: client.read_work_pool("z-local")["workers_online"], "the embedded worker")
    picker = nbw.pool_picker(client=client)
    assert [v for _, v in picker.dropdown.options] == ["a-docker", "z-local"]
    assert picker.value == "z-local"
    assert "● ready" in picker.info.value and "1 worker online" in picker.info.value


def test_pool_picker_without_a_server_says_so_instead_of_raising():
    # A server address where nothing answers.
    nobody = Client(f"http://127.0.0.1:{free_port()}/nbflows/api/")
    picker = nbw.pool_picker(client=nobody)
    assert picker.value is None
    assert picker.dropdown.options == ()
    assert picker.error.startswith("Cannot connect to the nbflows server at")
    assert "Cannot connect to the nbflows server" in picker.info.value
    assert "Traceback" not in picker.info.value

    # No server configured or discoverable at all.
    lonely = nbw.pool_picker()
    assert lonely.value is None
    assert "No running nbflows server was found" in lonely.error
    assert "nbflows server" in lonely.info.value


def test_widgets_do_not_call_the_server_in_a_kernel_run_by_a_worker(monkeypatch):
    monkeypatch.setenv("NBFLOWS_FLOW_RUN_ID", "run-1")
    nobody = Client(f"http://127.0.0.1:{free_port()}/nbflows/api/")
    picker = nbw.pool_picker(client=nobody)
    assert picker.value is None and picker.error == ""
    assert "not listed while a worker runs this notebook" in picker.info.value
    logs = nbw.run_logs("run-0", client=nobody)
    assert not logs.done and logs.error == ""
    assert "not followed while a worker runs this notebook" in logs.message.value
    history = nbw.run_history("sales", client=nobody)
    assert history.runs == [] and history.error == ""


# --------------------------------------------------------------------------------------------
# deploy_form


class Recorder:
    """A `deploy` callable keeping what it was called with."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer or {"full_name": "typed/nightly", "version": 3}

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.answer


@pytest.fixture
def typed_notebook(server: Server) -> Path:
    return write_notebook(
        server.root / "typed.ipynb",
        'rows = 3\nrate = 0.5\nverbose = False\nlabel = "daily"\nregions = ["eu", "us"]',
        "print(rows, rate, verbose, label, regions)",
    )


def test_deploy_form_builds_typed_inputs_from_the_parameters_cell(client, typed_notebook):
    form = nbw.deploy_form(typed_notebook, deploy=Recorder(), client=client)

    kinds = {name: type(field).__name__ for name, field in form.parameters.items()}
    assert kinds == {
        "rows": "IntText",
        "rate": "FloatText",
        "verbose": "Checkbox",
        "label": "Text",
        "regions": "Text",
    }
    assert form.parameters["rows"].value == 3
    assert form.parameters["regions"].value == '["eu", "us"]'


def test_deploy_form_build_request_and_the_deploy_button_send_the_form(client, typed_notebook):
    client.create_work_pool("etl", "process")
    client.create_work_queue("etl", "urgent", priority=1)
    recorder = Recorder()
    form = nbw.deploy_form(typed_notebook, deploy=recorder, client=client)
    assert form.pool.value == "etl"
    assert form.queue.value == "default"

    form.name.value = "nightly"
    form.queue.value = "urgent"
    form.schedule_kind.value = "cron"
    form.cron_preset.value = "custom"
    form.cron.value = "30 7 * * 1-5"
    form.timezone.value = "Europe/Paris"
    form.parameters["rows"].value = 10
    form.parameters["verbose"].value = True
    form.parameters["regions"].value = '["eu"]'
    form.description_text.value = "weekday mornings"

    expected = {
        "name": "nightly",
        "work_pool_name": "etl",
        "work_queue_name": "urgent",
        "parameters": {"rows": 10, "verbose": True, "regions": ["eu"]},
        "cron": "30 7 * * 1-5",
        "timezone": "Europe/Paris",
        "description": "weekday mornings",
    }
    assert form.build_request() == expected

    form.deploy_button.click()
    assert recorder.calls == [expected]
    assert form.error == ""
    assert "Deployed <b>typed/nightly</b> (version 3)" in form.status.value

    # An interval preset and an image instead.
    form.schedule_kind.value = "interval"
    form.interval_preset.value = 900
    form.timezone.value = "UTC"
    form.use_image.value = True
    form.image_name.value = "sales"
    form.push.value = True
    request = form.build_request()
    assert request["interval"] == 900 and request["timezone"] == "UTC" and "cron" not in request
    assert request["image"].name == "sales" and request["image"].dockerfile == "auto"
    assert request["image"].tag is None and request["push"] is True


def test_deploy_form_says_what_to_fix_before_calling_deploy(client, typed_notebook):
    client.create_work_pool("etl", "process")
    recorder = Recorder()
    form = nbw.deploy_form(typed_notebook, deploy=recorder, client=client)

    form.deploy_button.click()
    assert form.error == "give the deployment a name (e.g. nightly)"
    assert "give the deployment a name" in form.status.value

    form.name.value = "nightly"
    form.schedule_kind.value = "cron"
    form.cron_preset.value = "custom"
    form.cron.value = "61 * * * *"
    form.deploy_button.click()
    assert "61" in form.error and "cron" in form.error.lower()

    form.cron.value = "0 6 * * *"
    form.timezone.value = "Mars/Olympus"
    form.deploy_button.click()
    assert "unknown timezone 'Mars/Olympus'" in form.error

    form.schedule_kind.value = "none"
    form.parameters["regions"].value = "eu, us"
    form.deploy_button.click()
    assert "parameter 'regions' must be a JSON list" in form.error
    assert recorder.calls == []


def test_deploy_form_deploys_a_notebook_and_shows_its_next_runs(client, server):
    client.create_work_pool("etl", "process")
    form = nbw.deploy_form(server.root / "trivial.ipynb", client=client)
    form.name.value = "nightly"
    form.schedule_kind.value = "cron"
    form.cron_preset.value = "0 6 * * *"
    form.timezone.value = "Europe/Paris"
    form.parameters["x"].value = 41

    form.deploy_button.click()

    assert form.error == ""
    status = form.status.value
    assert "Deployed <b>trivial/nightly</b> (version 1) to pool <b>etl</b>" in status
    assert re.search(r"Next runs: \d{4}-\d\d-\d\d 06:00 CES?T", status), status
    deployment = client.read_deployment("trivial/nightly")
    assert form.deployment["id"] == deployment["id"]
    assert deployment["parameters"] == {"x": 41}
    assert deployment["schedules"][0]["cron"] == "0 6 * * *"
    assert deployment["schedules"][0]["timezone"] == "Europe/Paris"


def test_deploy_form_shows_the_servers_refusal_next_to_the_form(client, server):
    client.create_work_pool("etl", "process")
    form = nbw.deploy_form(server.root / "trivial.ipynb", client=client)
    form.name.value = "nightly"
    # The pool disappears after the form listed it: the server refuses the deployment.
    client.delete_work_pool("etl")

    form.deploy_button.click()

    assert form.error.startswith("no work pool named 'etl'")
    assert "✗ no work pool named &#x27;etl&#x27;" in form.status.value
    assert form.deployment == {}
    assert client.list_deployments() == []


def test_deploy_form_of_a_flow_calls_flow_deploy(client, server, monkeypatch, capsys):
    from nbflows.kernel_magics import Flow

    client.create_work_pool("etl", "process")
    # The kernel of repo_info.ipynb, started by this server.
    monkeypatch.setenv("NBFLOWS_API_URL", server.api)
    monkeypatch.setenv("NBFLOWS_API_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", "repo_info.ipynb")
    nb = json.loads((server.root / "repo_info.ipynb").read_text())
    source = next(
        "".join(c["source"]).split("\n", 1)[1]
        for c in nb["cells"]
        if "".join(c["source"]).startswith("%%flow")
    )
    # The flow as the kernel ran it, one line changed since the file was saved.
    ran = source.replace("Forks 🍴", "Forks, as run 🍴")
    flow = Flow(
        "get_repo_info", ran, shell=ipython_shell(), magic_line="%%flow get_repo_info --log-prints"
    )

    form = nbw.deploy_form(flow, client=client)
    assert list(form.parameters) == ["repo_name"]
    assert form.parameters["repo_name"].value == "jupyter/notebook"
    form.name.value = "from-the-form"
    form.parameters["repo_name"].value = "jupyter/lab"
    form.deploy_button.click()

    assert form.error == ""
    assert "Deployed <b>get_repo_info/from-the-form</b>" in form.status.value
    deployment = client.read_deployment("get_repo_info/from-the-form")
    assert deployment["kind"] == "cell"
    assert deployment["parameters"] == {"repo_name": "jupyter/lab"}
    # What the form deploys is the code run (defect 6), and it says so.
    frozen = client.read_deployment_notebook(deployment["id"])
    assert "".join(frozen["cells"][-1]["source"]).endswith(ran.rstrip("\n"))
    said = capsys.readouterr().out
    assert "the saved file differs (not saved since)" in said and "Forks, as run 🍴" in said


# --------------------------------------------------------------------------------------------
# run_logs


def test_run_logs_follows_a_real_run_to_its_final_state(client, server):
    client.create_work_pool("local", "process")
    deployment = client.deploy(
        path=str(server.root / "trivial.ipynb"), name="now", work_pool_name="local"
    )
    run = client.create_flow_run_from_deployment(deployment["id"], parameters={"x": 41})

    view = nbw.run_logs(run, client=client)
    final = view.wait(120)

    assert view.done
    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert view.state == "COMPLETED"
    assert "42" in view.lines
    assert ">42</div>" in view.log_view.value
    assert "Completed" in view.header.value
    assert "took " in view.header.value
    # The notebook's own server: a link by path, which works wherever the browser is.
    assert f'href="/nbflows/runs/{run["id"]}"' in view.header.value


def test_run_logs_shows_lines_while_the_run_executes_and_caps_them(bare_server):
    # The test is the worker here, over the real API, so it decides when lines arrive.
    client = bare_server.client()
    client.create_work_pool("remote", "process")
    deployment = client.deploy(
        path=str(bare_server.root / "trivial.ipynb"), name="watched", work_pool_name="remote"
    )
    run = client.create_flow_run_from_deployment(deployment["id"])

    view = nbw.run_logs(run["id"], client=client, max_lines=5)
    wait_for(lambda: view.state == "SCHEDULED", "the first state")
    assert "no log lines yet" in view.log_view.value

    [claimed] = client.claim("remote", "test-worker", limit=1)
    assert claimed["flow_run"]["id"] == run["id"]
    client.set_flow_run_state(run["id"], "RUNNING")
    wait_for(lambda: view.state == "RUNNING", "RUNNING")

    client.write_logs(run["id"], ["step 1 <starting>", "step 2"])
    wait_for(lambda: view.lines == ["step 1 <starting>", "step 2"], "the first lines")
    assert "step 1 &lt;starting&gt;" in view.log_view.value
    assert not view.done
    assert view.show_all_button.layout.display == "none"

    client.write_logs(
        run["id"], [f"row {i}" for i in range(10)] + [{"message": "boom", "source": "stderr"}]
    )
    wait_for(lambda: view.line_count == 13, "the second batch")
    assert view.lines == ["row 6", "row 7", "row 8", "row 9", "boom"]
    assert "8 earlier lines not shown" in view.log_view.value
    assert view.show_all_button.layout.display == ""
    assert view.show_all_button.description == "Show all 13 lines"

    client.set_flow_run_state(run["id"], "COMPLETED")
    final = view.wait(60)
    assert final["state"]["type"] == "COMPLETED"
    assert view.done

    view.show_all_button.click()
    assert view.lines[:3] == ["step 1 <starting>", "step 2", "row 0"]
    assert len(view.lines) == 13
    assert "earlier lines not shown" not in view.log_view.value
    client.close()


def test_dashboard_links_keep_only_the_path_for_the_notebooks_own_server():
    from nbflows.widgets.run_logs import dashboard_link

    local = Client("http://127.0.0.1:8888/user/ada/nbflows/api/")
    assert dashboard_link(local, "runs", "r 1") == "/user/ada/nbflows/runs/r%201"
    remote = Client("https://flows.example.org/nbflows/api/")
    assert dashboard_link(remote, "runs", "r1") == "https://flows.example.org/nbflows/runs/r1"


def test_run_logs_of_an_unknown_run_says_so(client):
    view = nbw.run_logs("no-such-run", client=client)
    view.wait(30)
    assert view.done
    assert view.error.startswith("no flow run with id 'no-such-run'")
    assert "no flow run with id &#x27;no-such-run&#x27;" in view.message.value


# --------------------------------------------------------------------------------------------
# run_history


def test_run_history_tables_runs_with_who_ran_them_and_a_timeline(bare_server):
    client = bare_server.client()
    client.create_work_pool("remote", "process")
    deployment = client.deploy(
        path=str(bare_server.root / "trivial.ipynb"), name="daily", work_pool_name="remote"
    )
    done = client.create_flow_run_from_deployment(deployment["id"], parameters={"x": 7})
    client.claim("remote", "worker-7", limit=1)
    client.set_flow_run_state(done["id"], "RUNNING")
    client.set_flow_run_state(done["id"], "FAILED", message="boom")
    waiting = client.create_flow_run_from_deployment(deployment["id"])
    interactive = client.create_flow_run("trivial")
    client.set_flow_run_state(interactive["id"], "COMPLETED")

    history = nbw.run_history("trivial", client=client)
    assert [r["id"] for r in history.runs] == [interactive["id"], waiting["id"], done["id"]]
    table = history.table.value
    assert table.count("<rect ") == 3
    assert 'fill="#c62828"' in table  # the failed run's bar
    assert "<td>interactive</td>" in table and "<td>worker-7</td>" in table
    assert "<code>x=7</code>" in table
    assert f'<a href="/nbflows/runs/{done["id"]}"' in table
    assert ">Failed</span>" in table and ">Completed</span>" in table

    only_deployment = nbw.run_history(deployment="trivial/daily", limit=1, client=client)
    assert [r["id"] for r in only_deployment.runs] == [waiting["id"]]

    unknown = nbw.run_history(deployment="trivial/nope", client=client)
    assert unknown.runs == [] and "no deployment 'trivial/nope'" in unknown.error
    client.close()


def test_deploy_form_redeploy_keeps_the_schedule_says_what_changed_and_moves_only_when_asked(
    client, server
):
    client.create_work_pool("etl", "process")
    client.create_work_pool("other", "process")
    form = nbw.deploy_form(server.root / "trivial.ipynb", client=client)
    form.name.value = "nightly"
    form.pool.value = "etl"
    form.schedule_kind.value = "cron"
    form.cron_preset.value = "0 6 * * *"
    form.deploy_button.click()
    assert form.error == ""

    # Deployed again as the form opens ("keep"), with a parameter: the schedule stays.
    again = nbw.deploy_form(server.root / "trivial.ipynb", client=client)
    assert again.schedule_kind.value == "keep"
    again.name.value = "nightly"
    again.pool.value = "etl"
    again.parameters["x"].value = 7
    again.deploy_button.click()
    assert again.error == ""
    deployment = client.read_deployment("trivial/nightly")
    assert [s["cron"] for s in deployment["schedules"]] == ["0 6 * * *"]
    assert re.search(r"Next runs: \d{4}-\d\d-\d\d 06:00 UTC", again.status.value)
    assert "Changed: parameters: none → {&quot;x&quot;: 7}" in again.status.value

    # Another pool: refused with what to do, then moved when the box is ticked.
    again.pool.value = "other"
    again.deploy_button.click()
    assert "runs on work pool 'etl'" in again.error and "move" in again.error
    assert client.read_deployment("trivial/nightly")["work_pool_name"] == "etl"
    again.move_pool.value = True
    again.deploy_button.click()
    assert again.error == ""
    assert client.read_deployment("trivial/nightly")["work_pool_name"] == "other"
    assert "work pool: etl → other" in again.status.value

    # "none" removes the schedules.
    again.schedule_kind.value = "none"
    again.deploy_button.click()
    assert client.read_deployment("trivial/nightly")["schedules"] == []
    assert "No schedule" in again.status.value
