"""The dashboard pages at `/nbflows/`, fetched over HTTP from a real server."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, start_server
from .waiting import wait_for


def page(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"token {server.token}"}
    return httpx.get(server.url + path, headers=headers, timeout=60, **kwargs)


@pytest.fixture
def populated(server: Server) -> dict[str, Any]:
    """A pool made from the CLI, a scheduled deployment and one completed run of it."""
    made = server.cli("work-pool", "create", "my-pool", "--type", "process")
    assert made.returncode == 0, made.stderr
    client = server.client()
    client.create_work_queue("my-pool", "urgent", priority=1, concurrency_limit=2)
    deployment = client.deploy(
        path=str(server.root / "trivial.ipynb"),
        name="nightly",
        work_pool_name="my-pool",
        schedules=[{"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Paris"}],
        job_variables={"env": {"API_TOKEN": "s3cret-value", "MODE": "fast"}},
    )
    run = client.create_flow_run_from_deployment(
        deployment["id"],
        parameters={"x": 41},
        job_variables={"env": {"DB_PASSWORD": "hunter2-value", "STAGE": "test"}},
    )
    final = client.watch_flow_run(run["id"], timeout=120)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    wait_for(lambda: client.read_work_pool("my-pool")["workers_online"], "the embedded worker")
    client.close()
    return {"deployment": deployment, "run": final}


def test_work_pools_tab_lists_pools_with_status_queues_and_workers(server, populated):
    response = page(server, "nbflows/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    text = response.text
    assert '<tr data-pool="my-pool">' in text
    assert "<td>process</td>" in text
    assert "● ready" in text
    assert '<b>urgent</b> <span class="muted">priority 1, limit 2</span>' in text
    assert "<b>default</b>" in text
    assert "embedded-" in text and "online" in text
    assert 'class="active" aria-current="page">Work Pools<' in text


def test_deployments_tab_shows_schedule_next_runs_and_actions(server, populated):
    deployment = populated["deployment"]
    text = page(server, "nbflows/deployments").text
    assert f'data-deployment="trivial/nightly" data-id="{deployment["id"]}"' in text
    # The schedule's own words, as `nbflows deployment ls` prints them.
    assert "cron &#39;0 6 * * *&#39; (Europe/Paris)" in text
    # 06:00 in Paris is 05:00 or 04:00 UTC.
    assert " 05:00:00</div>" in text or " 04:00:00</div>" in text
    assert f'data-action="pause" data-id="{deployment["id"]}"' in text
    assert 'name="x" data-type="integer" data-initial="1" value="1"' in text
    assert "MODE" in text and "fast" in text
    assert "s3cret-value" not in text


def test_flow_runs_tab_lists_runs_and_filters_them(server, populated):
    run, deployment = populated["run"], populated["deployment"]
    text = page(server, "nbflows/runs").text
    assert f'<tr data-run="{run["id"]}">' in text
    assert f">{run['name']}</a>" in text
    assert ">Completed</span>" in text
    assert '<code class="params">{&#34;x&#34;: 41}</code>' in text

    by_deployment = page(server, f"nbflows/runs?deployment={deployment['id']}&state=COMPLETED")
    assert f'<tr data-run="{run["id"]}">' in by_deployment.text
    assert 'value="COMPLETED" selected' in by_deployment.text

    failed = page(server, "nbflows/runs?state=failed").text
    assert "No flow runs match these filters." in failed

    bad = page(server, "nbflows/runs?state=bogus")
    assert bad.status_code == 422
    assert "unknown state BOGUS" in html.unescape(bad.text)


def test_run_page_shows_details_logs_and_the_executed_notebook(server, populated):
    run = populated["run"]
    response = page(server, f"nbflows/runs/{run['id']}")
    assert response.status_code == 200
    text = response.text
    assert f'data-run-id="{run["id"]}" data-state="COMPLETED"' in text
    assert '<span class="msg">42</span>' in text
    assert '<iframe class="notebook" sandbox' in text
    # The notebook is inside the frame's srcdoc, escaped once more as an attribute.
    srcdoc = html.unescape(text.split('srcdoc="', 1)[1].split('"></iframe>', 1)[0])
    assert "<pre>42\n</pre>" in srcdoc
    assert 'class="highlight' in srcdoc
    assert "run.js" in text
    assert "STAGE" in text and "hunter2-value" not in text

    notebook = page(server, f"nbflows/runs/{run['id']}/notebook")
    assert notebook.status_code == 200
    assert notebook.headers["Content-Security-Policy"] == "sandbox"
    assert "<pre>42\n</pre>" in notebook.text

    missing = page(server, "nbflows/runs/no-such-run")
    assert missing.status_code == 404
    assert "no flow run with id &#39;no-such-run&#39;" in missing.text


def test_static_files_are_served(server):
    css = page(server, "nbflows/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"] == "text/css; charset=UTF-8"
    assert ".state-completed" in css.text
    js = page(server, "nbflows/static/run.js")
    assert js.status_code == 200 and "flow_runs/" in js.text
    assert page(server, "nbflows/static/nope.js").status_code == 404
    assert page(server, "nbflows/static/..%2Fdashboard.py").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["nbflows/", "nbflows/deployments", "nbflows/runs", "nbflows/runs/x", "nbflows/static/run.js"],
)
def test_pages_need_authentication(bare_server, path):
    anonymous = httpx.get(bare_server.url + path, follow_redirects=False, timeout=60)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/login?next=")
    wrong = httpx.get(
        bare_server.url + path,
        headers={"Authorization": "token not-the-token"},
        follow_redirects=False,
        timeout=60,
    )
    assert wrong.status_code == 302
    assert page(bare_server, path).status_code in (200, 404)


DENY_NBFLOWS = '''
from jupyter_server.auth.authorizer import Authorizer


class DenyNBFlows(Authorizer):
    """Everything but the nbflows resource outside the API (the tests' server start needs it)."""

    def is_authorized(self, handler, user, action, resource):
        in_api = handler.request.path.startswith("/nbflows/api/")
        return resource != "nbflows" or in_api
'''


def test_pages_need_authorization_on_the_nbflows_resource(tmp_path: Path):
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "deny_nbflows.py").write_text(DENY_NBFLOWS)
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
    server = start_server(
        tmp_path,
        embedded_worker=False,
        extra_args=["--ServerApp.authorizer_class=deny_nbflows.DenyNBFlows"],
        env={"PYTHONPATH": path},
    )
    try:
        for path in ("nbflows/", "nbflows/deployments", "nbflows/runs", "nbflows/static/run.js"):
            response = page(server, path)
            assert response.status_code == 403, path
        # The same user may still use the rest of Jupyter (and here, the nbflows API).
        assert page(server, "api/contents").status_code == 200
        assert server.http("GET", "work_pools").status_code == 200
    finally:
        server.stop()
