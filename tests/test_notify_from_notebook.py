"""`flow.notify_on_failure(url)` from a notebook in a real kernel: the flow's next failed run is
posted to the URL by the server (apprise's json:// pointed at a receiver on loopback)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from .receivers import HTTPReceiver
from .servers import Server
from .test_notebook_journey import run_notebook, text_of
from .waiting import wait_for

pytestmark = pytest.mark.slow


def test_a_flow_told_to_notify_on_failure_notifies_when_it_fails(
    server: Server,
    tmp_path: Path,
) -> None:
    with HTTPReceiver() as http:
        url = f"json://127.0.0.1:{http.port}/alerts"
        path = server.root / "alerts.ipynb"
        cells = [
            "%load_ext nbflows",
            "fail = False",
            '%%flow nightly_sum\nprint("summing")\nif fail:\n    raise RuntimeError("the sum is off")',
            f"nightly_sum.notify_on_failure({url!r})",
            f"nightly_sum.notify_on_failure({url!r})  # again: the same rule",
            "fail = True",
            "nightly_sum()",
        ]
        nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), path)
        env = {**os.environ, "NBFLOWS_API_URL": server.api, "NBFLOWS_API_TOKEN": server.token}
        nb = run_notebook(path, env, allow_errors=True)
        said = text_of(nb.cells[3])
        assert f"end FAILED or CRASHED notify json://127.0.0.1:{http.port}/***" in said, said
        assert "RuntimeError: the sum is off" in text_of(nb.cells[6])

        [posted] = wait_for(lambda: http.bodies("/alerts"), "the failure posted")
        assert "nightly_sum" in posted["title"] and "FAILED" in posted["title"]
        assert "RuntimeError: the sum is off" in posted["message"]
        assert "summing" in posted["message"]  # the tail of its logs
        rules = server.client().list_automations()
        assert [r["scope"] for r in rules] == [{"flow_name": "nightly_sum"}]
