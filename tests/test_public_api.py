"""`import nbflows`: the public names, kept light, and `nbflows.client.deploy` against a real server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nbflows.errors import InvalidInput, NotFound

from .servers import Server


def test_import_is_light_and_exposes_the_public_api() -> None:
    code = (
        "import sys, nbflows\n"
        "names = ['flow', 'Flow', 'deploy', 'DeploymentImage', 'get_client', 'run_deployment',"
        " 'CronSchedule', 'IntervalSchedule', 'RRuleSchedule']\n"
        "missing = [n for n in names if not hasattr(nbflows, n)]\n"
        "assert not missing, missing\n"
        "assert callable(nbflows.widgets.pool_picker)\n"
        "heavy = [m for m in ('tornado', 'sqlalchemy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_deploy_function(bare_server: Server) -> None:
    import nbflows

    client = bare_server.client()
    client.create_work_pool("api-pool", "process")
    notebook = bare_server.root / "repo_info.ipynb"
    whole = nbflows.deploy(
        notebook, "nightly", "api-pool", cron="0 6 * * *", timezone="Europe/Paris", client=client
    )
    assert whole["full_name"] == "repo_info/nightly"
    assert whole["schedules"][0]["cron"] == "0 6 * * *"
    cell = nbflows.deploy(
        notebook,
        "cell",
        "api-pool",
        flow_name="get_repo_info",
        parameters={"repo_name": "ipython/ipython"},
        client=client,
    )
    assert cell["full_name"] == "get_repo_info/cell" and cell["parameters"] == {
        "repo_name": "ipython/ipython"
    }
    with pytest.raises(InvalidInput, match="repo_name"):
        nbflows.deploy(notebook, "bad", "api-pool", parameters={"repo": 1}, client=client)
    with pytest.raises(NotFound, match="no work pool"):
        nbflows.deploy(notebook, "bad", "nope", client=client)
    assert {d["full_name"] for d in client.list_deployments()} == {
        "repo_info/nightly",
        "get_repo_info/cell",
    }
