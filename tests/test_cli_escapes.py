"""Text from the server (run names, log lines, state messages, outputs) reaches the terminal
without its escape sequences: `nbflows` shows it, the terminal never obeys it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from .servers import Server, start_server

#: Sets the terminal's title, then clears the screen.
EVIL = "\x1b]0;pwned\x07\x1b[2J"
#: Any control character but newline and tab (rich adds none: its output here is no terminal).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {
            "cell_type": "code",
            "id": "evil",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": 'print("before\\x1b]0;pwned\\x07 title\\x1b[2J cleared")',
        }
    ],
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("escapes"))
    try:
        yield server
    finally:
        server.stop()


def shown(srv: Server, *args: str) -> str:
    """Run the CLI; its stdout and stderr, checked free of control characters."""
    done = srv.cli(*args)
    both = done.stdout + done.stderr
    found = CONTROL.search(both)
    assert found is None, f"nbflows {' '.join(args)} printed {found.group()!r}:\n{both!r}"
    return both


@pytest.mark.slow
def test_a_watched_run_prints_its_output_without_escape_sequences(srv: Server) -> None:
    (srv.root / "escapes.ipynb").write_text(json.dumps(NOTEBOOK))
    shown(srv, "work-pool", "create", "p", "--type", "process")
    shown(srv, "deploy", "escapes.ipynb", "--name", "d", "--pool", "p")
    text = shown(srv, "deployment", "run", "escapes/d", "--watch", "--timeout", "120")
    assert "before title cleared" in text, text
    assert "Completed" in text


def test_run_names_log_lines_and_outputs_are_shown_without_escape_sequences(srv: Server) -> None:
    run = srv.http("POST", "flow_runs", json={"flow_name": f"evil{EVIL}", "tags": [EVIL]}).json()
    lines = [{"message": f"line{EVIL}one"}, {"message": f"two\t{EVIL}", "source": f"x{EVIL}"}]
    assert srv.http("POST", f"flow_runs/{run['id']}/logs", json=lines).status_code == 201
    notebook = {**NOTEBOOK, "cells": [{**NOTEBOOK["cells"][0], "source": f"# {EVIL}"}]}
    notebook["cells"][0]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": f"out{EVIL}put\n"},
        {"output_type": "error", "ename": "E", "evalue": EVIL, "traceback": [f"\x1b[31mtb{EVIL}"]},
    ]
    assert srv.http("PUT", f"flow_runs/{run['id']}/notebook", json=notebook).status_code == 204
    message = {"type": "FAILED", "message": f"failed{EVIL}here"}
    assert srv.http("POST", f"flow_runs/{run['id']}/set_state", json=message).status_code == 200

    assert "evil" in shown(srv, "flow-run", "ls")
    assert "failedhere" in shown(srv, "flow-run", "inspect", run["id"])
    logs = shown(srv, "flow-run", "logs", run["id"])
    assert "lineone" in logs and "two" in logs
    assert "lineone" in shown(srv, "flow-run", "logs", run["id"], "--follow")
    notebook_text = shown(srv, "flow-run", "notebook", run["id"])
    assert "output" in notebook_text and "tb" in notebook_text
    # JSON output keeps the text as it is, escaped as JSON does.
    assert json.loads(srv.cli("flow-run", "inspect", run["id"], "-o", "json").stdout)[
        "name"
    ].startswith(f"evil{EVIL}")
