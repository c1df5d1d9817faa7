"""`%%flow`, `%deploy` and Flow objects, driven through a real IPython shell.

Runs are recorded by a `RecordingReporter` installed with `nbflows.kernel_magics.set_reporter`;
`ApiReporter` is exercised with a recording stand-in for the HTTP client (the real server is
covered by the integration tests); headless mode by its real reporter, whose events are read
from IPython's display publisher.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbflows.client.api_errors import NoServerError
from nbflows.errors import InvalidInput
from nbflows.kernel_magics import (
    ApiReporter,
    Flow,
    FlowRunRecord,
    FlowTimeout,
    set_reporter,
)
from nbflows.protocol import EVENT_MIME_TYPE

from .kernel_support import ipython_shell
from .servers import NBFLOWS_ENV, isolate_from_servers


class RecordingReporter:
    """Keeps every reporter call, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.runs: list[FlowRunRecord] = []

    def start_run(self, run: FlowRunRecord) -> None:
        if run.attempt == 1:
            self.runs.append(run)
        self.events.append(("start", run.flow_name, run.attempt))

    def log(self, run: FlowRunRecord, lines: list[dict[str, Any]]) -> None:
        self.events.append(("log", run.flow_name, [dict(line) for line in lines]))

    def finish(
        self, run: FlowRunRecord, state: str, message: str | None, *, retrying: bool = False
    ) -> None:
        self.events.append(("finish", run.flow_name, state, message, retrying))

    def recent_runs(self, flow_name: str, limit: int) -> list[dict[str, Any]]:
        return [{"flow_name": r.flow_name, "key": r.key} for r in self.runs][::-1][:limit]

    def states(self) -> list[tuple[str, int | str, bool | None]]:
        """(flow, attempt) for starts and (flow, state, retrying) for ends."""
        out: list[tuple[Any, ...]] = []
        for event in self.events:
            if event[0] == "start":
                out.append(("start", event[1], event[2]))
            elif event[0] == "finish":
                out.append(("finish", event[1], event[2], event[4]))
        return out  # type: ignore[return-value]

    def lines(self, source: str | None = None) -> list[str]:
        return [
            line["message"]
            for event in self.events
            if event[0] == "log"
            for line in event[2]
            if source is None or line["source"] == source
        ]

    def finished(self) -> tuple[Any, ...]:
        return [event for event in self.events if event[0] == "finish"][-1]


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "nbflows")
    return shell


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # No Jupyter server of this user is discovered: "no server" is the default here.
    isolate_from_servers(monkeypatch, tmp_path / "runtime")


@pytest.fixture
def recorder() -> Iterator[RecordingReporter]:
    reporter = RecordingReporter()
    previous = set_reporter(reporter)
    yield reporter
    set_reporter(previous)


def run_flow(ip: InteractiveShell, line: str, body: str) -> Any:
    """Run `%%flow line` + body as a cell (as the kernel does); returns the ExecutionResult."""
    return ip.run_cell(f"%%flow {line}\n{body}")


# --------------------------------------------------------------------------------------------
# Running a cell


def test_completed_run_records_prints_and_logging_as_log_lines(ip, recorder):
    body = (
        "import logging\n"
        "print('first line')\n"
        "print('second', 'line')\n"
        "logging.getLogger('sales').warning('low stock')\n"
    )
    with capture_output() as captured:
        result = run_flow(ip, "report --tags 'sales, daily'", body)

    assert result.success
    assert "first line\nsecond line\n" in captured.stdout  # the cell still shows its output
    assert recorder.states() == [("start", "report", 1), ("finish", "report", "COMPLETED", False)]
    assert recorder.lines("stdout") == ["first line", "second line"]
    assert recorder.lines("logging") == ["sales: low stock"]
    assert recorder.finished()[3] is None
    run = recorder.runs[0]
    assert run.tags == ["sales", "daily"]
    assert run.start_time is not None and run.end_time is not None
    assert run.end_time >= run.start_time


def test_no_log_prints_shows_output_without_recording_it(ip, recorder):
    with capture_output() as captured:
        run_flow(
            ip,
            'quiet --no-log-prints --description "prints, not logs"',
            "import logging\nprint('shown')\nlogging.error('kept')",
        )
    assert "shown" in captured.stdout
    assert recorder.lines("stdout") == []
    assert recorder.lines("logging") == ["kept"]
    assert recorder.runs[0].description == "prints, not logs"


def test_logging_warnings_still_show_when_no_handler_is_configured(ip, recorder, monkeypatch):
    monkeypatch.setattr(logging.root, "handlers", [])  # pytest's log capture is one
    with capture_output() as captured:
        run_flow(ip, "warns", "import logging\nlogging.warning('disk almost full')")
    # Python prints it through logging.lastResort; recorded once, as a logging line.
    assert "disk almost full" in captured.stderr
    assert recorder.lines() == ["disk almost full"]


def test_failing_run_is_failed_with_traceback_and_the_error_shows_once(ip, recorder):
    with capture_output() as captured:
        result = run_flow(ip, "boom", "a = 1\nraise ValueError('bad input')\n")

    assert isinstance(result.error_in_exec, ValueError)
    assert captured.stdout.count("Traceback (most recent call last)") == 1
    assert "bad input" in captured.stdout
    _, name, state, message, retrying = recorder.finished()
    assert (name, state, retrying) == ("boom", "FAILED", False)
    assert message.startswith("ValueError: bad input")
    assert "line 3" in message  # the cell's own line number: line 1 is the %%flow line
    assert any("raise ValueError" in line for line in recorder.lines("error"))
    assert ip.user_ns["a"] == 1  # what ran before the error stays, as in a plain cell


def test_retries_run_the_body_again_and_report_each_attempt(ip, recorder):
    ip.user_ns["attempts"] = 0
    body = "attempts += 1\nif attempts < 3:\n    raise RuntimeError('flaky')\n'ok'"
    with capture_output() as captured:
        result = run_flow(ip, "flaky --retries 2 --retry-delay 0", body)

    assert result.success
    assert result.result == "ok"
    assert ip.user_ns["attempts"] == 3
    assert recorder.states() == [
        ("start", "flaky", 1),
        ("finish", "flaky", "FAILED", True),
        ("start", "flaky", 2),
        ("finish", "flaky", "FAILED", True),
        ("start", "flaky", 3),
        ("finish", "flaky", "COMPLETED", False),
    ]
    assert "attempt 1 of 3 failed (RuntimeError: flaky); retrying" in captured.stderr


def test_retries_exhausted_fail_the_run(ip, recorder):
    with capture_output():
        result = run_flow(ip, "always --retries 1", "raise KeyError('nope')")
    assert isinstance(result.error_in_exec, KeyError)
    assert recorder.states()[-2:] == [
        ("start", "always", 2),
        ("finish", "always", "FAILED", False),
    ]


def test_timeout_interrupts_the_body_and_fails_the_run(ip, recorder):
    with capture_output() as captured:
        result = run_flow(ip, "slow --timeout 0.2", "import time\ntime.sleep(30)\ndone = True")

    assert isinstance(result.error_in_exec, FlowTimeout)
    assert "done" not in ip.user_ns
    _, _, state, message, _ = recorder.finished()
    assert state == "FAILED"
    assert "flow 'slow' timed out after 0.2 s" in message
    assert "time.sleep(30)" in message  # where it was interrupted
    assert "timed out after 0.2 s" in captured.stdout


def test_a_callers_timeout_fails_the_caller_and_is_not_retried_by_the_callee(ip, recorder):
    ip.user_ns["nap"] = 0
    run_flow(ip, "sleeper --retries 3", "import time\ntime.sleep(nap)")
    ip.user_ns["nap"] = 30
    with capture_output():
        result = run_flow(ip, "boss --timeout 0.3", "sleeper()")

    assert isinstance(result.error_in_exec, FlowTimeout)
    assert "flow 'boss' timed out" in str(result.error_in_exec)
    assert recorder.states()[-4:] == [
        ("start", "boss", 1),
        ("start", "sleeper", 1),
        ("finish", "sleeper", "FAILED", False),
        ("finish", "boss", "FAILED", False),
    ]


def test_timeout_on_another_thread(ip, recorder):
    ip.user_ns["busy_for"] = 0
    run_flow(
        ip,
        "busy --timeout 0.3",
        "import time\nend = time.time() + busy_for\nwhile time.time() < end: pass",
    )
    ip.user_ns["busy_for"] = 30
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ip.user_ns["busy"]()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], FlowTimeout)
    assert "flow 'busy' timed out after 0.3 s" in str(errors[0])
    assert recorder.finished()[2] == "FAILED"


def test_namespace_effects_are_those_of_a_plain_cell(ip, recorder):
    body = (
        "import json as js\n"
        "ns_a = 1\n"
        "ns_b = [ns_a, 2]\n"
        "def ns_f(x):\n"
        "    return x + ns_a\n"
        "class NsThing:\n"
        "    size = ns_f(1)\n"
        "ns_c = NsThing.size\n"
    )
    names = ["js", "ns_a", "ns_b", "ns_f", "NsThing", "ns_c"]

    def run_and_collect(run: Any) -> tuple[set[str], dict[str, Any]]:
        for name in names:
            ip.user_ns.pop(name, None)
        before = set(ip.user_ns)
        run()
        return set(ip.user_ns) - before, {name: ip.user_ns[name] for name in names}

    plain_new, plain = run_and_collect(lambda: ip.run_cell(body))
    flow_new, flowed = run_and_collect(lambda: run_flow(ip, "nsflow", body))

    assert flow_new - plain_new == {"nsflow"}
    assert isinstance(ip.user_ns["nsflow"], Flow)
    assert plain_new - flow_new == set()
    assert flowed["js"] is plain["js"]
    assert (flowed["ns_a"], flowed["ns_b"], flowed["ns_c"]) == (1, [1, 2], 2)
    assert flowed["ns_f"](10) == plain["ns_f"](10) == 11


def test_last_expression_is_displayed_like_a_cell(ip, recorder):
    result = run_flow(ip, "shows", "x = 40\nx + 2")
    assert result.result == 42
    assert ip.user_ns["_"] == 42

    result = run_flow(ip, "silent", "x = 40\nx + 3;")
    assert result.result is None  # a trailing ';' hides it, as in a plain cell


def test_ipython_syntax_in_the_body_is_transformed(ip, recorder):
    with capture_output():
        result = run_flow(ip, "magicky", "%time mv = 3\nmv * 2")
    assert result.success
    assert ip.user_ns["mv"] == 3
    assert result.result == 6


def test_syntax_error_changes_nothing(ip, recorder):
    ip.user_ns.pop("broken", None)
    with capture_output():
        result = run_flow(ip, "broken", "x = (\n")
    assert isinstance(result.error_in_exec, SyntaxError)
    assert "broken" not in ip.user_ns
    assert recorder.events == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "required: name"),
        ("2fast", "not a valid flow name"),
        ("class", "not a valid flow name"),
        ("my-flow", "not a valid flow name"),
        ("ok --retries -1", "--retries must be 0 or more"),
        ("ok --retries two", "invalid int value"),
        ("ok --retry-delay -1", "--retry-delay must be 0 or more"),
        ("ok --timeout 0", "--timeout must be more than 0"),
        ("ok --log-prints --no-log-prints --bogus", "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_raise_usage_error(ip, recorder, line, expected):
    with pytest.raises(UsageError, match=expected):
        ip.run_cell_magic("flow", line, "1\n")
    assert recorder.events == []


def test_usage_error_shows_without_traceback(ip, recorder):
    with capture_output() as captured:
        result = run_flow(ip, "--retries 1", "1")
    assert isinstance(result.error_in_exec, UsageError)
    output = captured.stdout + captured.stderr
    assert "UsageError" in output
    assert "Traceback" not in output


def test_help_has_examples():
    from nbflows.kernel_magics.magics import FlowMagics

    doc = FlowMagics.flow.__doc__
    assert "Examples" in doc
    assert "--retries" in doc and "--no-log-prints" in doc


# --------------------------------------------------------------------------------------------
# Flow objects


def test_flow_is_callable_with_parameters_overriding_notebook_variables(ip, recorder):
    ip.user_ns["repo"] = "data/sales.csv"
    run_flow(ip, "load", "loaded = repo.upper()\nloaded")

    value = ip.user_ns["load"](repo="data/other.csv")

    assert value == "DATA/OTHER.CSV"  # a call returns the last expression's value
    assert ip.user_ns["loaded"] == "DATA/OTHER.CSV"
    assert ip.user_ns["repo"] == "data/sales.csv"  # the parameter was for that run only
    assert recorder.runs[-1].parameters == {"repo": "data/other.csv"}
    assert recorder.states()[-2:] == [("start", "load", 1), ("finish", "load", "COMPLETED", False)]


def test_flow_call_rejects_unknown_parameters(ip, recorder):
    ip.user_ns["repo"] = "data/sales.csv"
    run_flow(ip, "load2", "repo.upper()")
    with pytest.raises(InvalidInput, match=r"unknown parameter 'rpo'.*reads: repo"):
        ip.user_ns["load2"](rpo="x")


def test_flow_call_failure_raises(ip, recorder):
    with capture_output():
        run_flow(ip, "divide", "1 / divisor")
    ip.user_ns["divisor"] = 0
    with pytest.raises(ZeroDivisionError):
        ip.user_ns["divide"]()
    assert recorder.finished()[2] == "FAILED"


def test_a_flow_called_by_a_flow_is_its_child(ip, recorder):
    run_flow(ip, "inner", "'inner result'")
    run_flow(ip, "outer", "got = inner()")
    outer_run, inner_run = recorder.runs[-2], recorder.runs[-1]
    assert (outer_run.flow_name, inner_run.flow_name) == ("outer", "inner")
    assert inner_run.parent is outer_run
    assert ip.user_ns["got"] == "inner result"


def test_runs_comes_from_the_reporter(ip, recorder):
    run_flow(ip, "hist", "1")
    ip.user_ns["hist"]()
    runs = ip.user_ns["hist"].runs(limit=1)
    assert runs == [{"flow_name": "hist", "key": recorder.runs[-1].key}]


def test_serve_runs_the_flow_on_its_schedule_until_stopped(ip, recorder):
    ip.user_ns["served"] = []
    run_flow(ip, "tick", "served.append(len(served))")
    handle = ip.user_ns["tick"].serve(interval=1)
    try:
        deadline = time.monotonic() + 10
        while len(ip.user_ns["served"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        handle.stop()
    assert not handle.running
    assert len(ip.user_ns["served"]) >= 2
    assert handle.run_count >= 1
    count = len(ip.user_ns["served"])
    time.sleep(1.2)
    assert len(ip.user_ns["served"]) == count  # stopped means stopped


def test_serve_needs_a_schedule(ip, recorder):
    run_flow(ip, "nosched", "1")
    with pytest.raises(InvalidInput, match="needs a schedule"):
        ip.user_ns["nosched"].serve()


# --------------------------------------------------------------------------------------------
# Deploying without a server


def test_deploy_without_a_server_says_what_is_needed(ip, recorder, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/sales.ipynb")
    run_flow(ip, "shipit", "1")
    with pytest.raises(NoServerError, match=r"needs a running nbflows server.*nbflows server"):
        ip.user_ns["shipit"].deploy(name="nightly", work_pool_name="pool", cron="0 6 * * *")

    with pytest.raises(UsageError, match="needs a running nbflows server"):
        ip.run_line_magic("deploy", "shipit --name nightly --pool pool --cron '0 6 * * *'")


def test_deploy_magic_checks_its_arguments(ip, recorder):
    with pytest.raises(UsageError, match="not a flow of this notebook"):
        ip.run_line_magic("deploy", "nosuchflow --name d --pool p")
    with pytest.raises(UsageError, match="required: --pool"):
        ip.run_line_magic("deploy", "x --name d")
    run_flow(ip, "params", "1")
    with pytest.raises(UsageError, match="NAME=VALUE"):
        ip.run_line_magic("deploy", "params --name d --pool p --param novalue")
    with pytest.raises(UsageError, match="--no-schedule removes the schedules"):
        ip.run_line_magic("deploy", "params --name d --pool p --no-schedule --cron '0 6 * * *'")


def test_deploy_magic_reads_params_as_the_cli_does(ip, recorder, monkeypatch):
    from nbflows.notebooks.parameters import parse_key_values

    run_flow(ip, "typed", "1")
    sent: dict[str, Any] = {}

    def deploy(self: Flow, **kwargs: Any) -> dict[str, Any]:
        sent.update(kwargs)
        return {"full_name": "typed/d", "changes": []}

    monkeypatch.setattr(Flow, "deploy", deploy)
    items = ["flag=true", "n=3", "ratio=0.5", "name=plain text", "none=null", "xs=[1, 2]"]
    line = "typed --name d --pool p " + " ".join(f"--param '{item}'" for item in items)
    with capture_output():
        ip.run_line_magic("deploy", line)
    assert sent["parameters"] == parse_key_values(items, "--param")
    assert sent["parameters"]["flag"] is True and sent["parameters"]["n"] == 3


# --------------------------------------------------------------------------------------------
# Headless: a worker runs the kernel


def events_in(captured: Any) -> list[dict[str, Any]]:
    return [out.data[EVENT_MIME_TYPE] for out in captured.outputs if EVENT_MIME_TYPE in out.data]


def test_headless_child_runs_are_events_in_the_output(ip, monkeypatch):
    monkeypatch.setenv("NBFLOWS_FLOW_RUN_ID", "run-123")
    monkeypatch.setenv("NBFLOWS_RUN_KIND", "notebook")
    monkeypatch.setenv("NBFLOWS_FLOW_NAME", "sales")
    previous = set_reporter(None)
    try:
        with capture_output() as captured:
            result = run_flow(ip, "child --tags t1", "print('in child')")
        with capture_output() as failed:
            run_flow(ip, "child2", "raise ValueError('bad')")
    finally:
        set_reporter(previous)

    assert result.success
    assert "in child" in captured.stdout
    started, finished = events_in(captured)
    assert started["event"] == "flow_run_started"
    assert finished["event"] == "flow_run_finished"
    for event in (started, finished):
        assert event["flow_name"] == "child"
        assert event["parent_run_id"] == "run-123"
        assert event["run_key"] == started["run_key"]
        assert event["tags"] == ["t1"]
    assert (started["state"], finished["state"]) == ("RUNNING", "COMPLETED")
    assert finished["duration"] >= 0

    failure = events_in(failed)[-1]
    assert (failure["state"], failure["retrying"]) == ("FAILED", False)
    assert failure["message"].startswith("ValueError: bad")


def test_headless_deployed_cell_flow_is_the_run_itself(ip, monkeypatch):
    monkeypatch.setenv("NBFLOWS_FLOW_RUN_ID", "run-9")
    monkeypatch.setenv("NBFLOWS_RUN_KIND", "cell")
    monkeypatch.setenv("NBFLOWS_FLOW_NAME", "deployed")
    ip.user_ns["tries"] = 0
    previous = set_reporter(None)
    try:
        with capture_output() as captured:
            result = run_flow(ip, "deployed --retries 2", "tries += 1\nraise OSError('gone')")
    finally:
        set_reporter(previous)
    assert isinstance(result.error_in_exec, OSError)  # fails the cell, so the notebook fails
    assert ip.user_ns["tries"] == 1  # the deployment retries the run, not the kernel
    assert events_in(captured) == []


def test_headless_deploy_serve_and_runs_do_nothing(ip, recorder, monkeypatch):
    run_flow(ip, "noop", "1")
    monkeypatch.setenv("NBFLOWS_FLOW_RUN_ID", "run-5")
    monkeypatch.setenv("NBFLOWS_RUN_KIND", "notebook")
    flow = ip.user_ns["noop"]
    with capture_output() as captured:
        assert flow.deploy(name="d", work_pool_name="p", cron="0 6 * * *") is None
        assert flow.serve(interval=60) is None
        assert flow.runs() == []
        ip.run_line_magic("deploy", "noop --name d --pool p")
    lines = captured.stdout.splitlines()
    assert len(lines) == 4
    assert all("does nothing here" in line and "run-5" in line for line in lines)


# --------------------------------------------------------------------------------------------
# ApiReporter, with a recording client in place of HTTP


class RecordingClient:
    api_url = "http://127.0.0.1:1/nbflows/api/"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._next = 0

    def create_flow_run(self, flow_name: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        self.calls.append(("create", flow_name, fields))
        return {"id": f"id-{self._next}"}

    def set_flow_run_state(self, id: str, type: str, name=None, message=None, retry=False):
        self.calls.append(("state", id, type, name, retry))
        return {}

    def write_logs(self, id: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("logs", id, [line["message"] for line in lines]))
        assert all(isinstance(line["timestamp"], str) for line in lines)
        return {"accepted": len(lines)}


def test_api_reporter_sends_run_logs_and_states_in_order(ip, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/sales.ipynb")
    client = RecordingClient()
    reporter = ApiReporter(client)  # type: ignore[arg-type]
    previous = set_reporter(reporter)
    ip.user_ns["api_tries"] = 0
    try:
        with capture_output():
            run_flow(
                ip,
                "apiflow --retries 1 --tags x",
                "api_tries += 1\nprint('try', api_tries)\nassert api_tries > 1, 'first fails'",
            )
        assert reporter.flush(10)
    finally:
        set_reporter(previous)

    create = client.calls[0]
    assert create[:2] == ("create", "apiflow")
    assert create[2]["tags"] == ["x"]
    assert create[2]["max_retries"] == 1
    assert create[2]["notebook_path"] == "notebooks/sales.ipynb"
    others = [call for call in client.calls[1:] if call[0] == "state"]
    assert [(c[2], c[3], c[4]) for c in others] == [
        ("FAILED", None, False),
        ("SCHEDULED", None, True),
        ("RUNNING", "Retrying", False),
        ("COMPLETED", None, False),
    ]
    logged = [m for call in client.calls if call[0] == "logs" for m in call[2]]
    assert logged[0] == "try 1"
    assert "try 2" in logged
    assert any("AssertionError: first fails" in m for m in logged)


def test_api_reporter_links_a_child_run_to_its_parent(ip):
    client = RecordingClient()
    reporter = ApiReporter(client)  # type: ignore[arg-type]
    previous = set_reporter(reporter)
    try:
        run_flow(ip, "apichild", "1")
        run_flow(ip, "apiparent", "apichild()")
        assert reporter.flush(10)
    finally:
        set_reporter(previous)
    creates = [call for call in client.calls if call[0] == "create"]
    parent_id = "id-2"
    assert creates[1][1] == "apiparent"
    assert creates[2][1] == "apichild"
    assert creates[2][2]["parent_run_id"] == parent_id


class UnreachableClient(RecordingClient):
    def create_flow_run(self, flow_name: str, **fields: Any) -> dict[str, Any]:
        raise NoServerError("Cannot connect to the nbflows server")


def test_api_reporter_problems_never_fail_a_cell_and_are_said_once(ip):
    reporter = ApiReporter(UnreachableClient())  # type: ignore[arg-type]
    previous = set_reporter(reporter)
    try:
        first = run_flow(ip, "unrecorded", "ran = 'yes'")
        assert reporter.flush(10)
        with capture_output() as second:
            run_flow(ip, "unrecorded", "1")
        assert reporter.flush(10)
        with capture_output() as third:
            run_flow(ip, "unrecorded", "1")
    finally:
        set_reporter(previous)
    assert first.success
    assert ip.user_ns["ran"] == "yes"
    assert "could not record flow run 'unrecorded'" in second.stderr
    assert "Cannot connect" in second.stderr
    assert third.stderr.count("could not record") == 1  # the second run failed too


# --------------------------------------------------------------------------------------------
# No server: the local journal


@pytest.fixture
def local_store(tmp_path, monkeypatch) -> Iterator[Path]:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    previous = set_reporter(None)
    yield tmp_path / "data"
    set_reporter(previous)


def test_without_a_server_runs_go_to_the_local_journal(ip, local_store):
    from nbflows.client import journal
    from nbflows.kernel_magics import LocalStoreReporter, get_reporter

    reporter = get_reporter()
    assert isinstance(reporter, LocalStoreReporter)
    with capture_output():
        run_flow(ip, "offline --tags lab", "print('no server here')")
        run_flow(ip, "offline", "raise RuntimeError('offline failure')")

    runs = ip.user_ns["offline"].runs(limit=5)

    assert [run["state"]["type"] for run in runs] == ["FAILED", "COMPLETED"]
    assert runs[0]["state"]["message"].startswith("RuntimeError: offline failure")
    assert runs[1]["tags"] == ["lab"]
    assert runs[1]["kind"] == "interactive"
    [entry] = [e for e in journal.read_entries() if e["id"] == runs[1]["id"]]
    assert [line["message"] for line in entry["logs"]] == ["no server here"]
    assert not (local_store / "nbflows" / "nbflows.db").exists()  # the kernel never made a store


# --------------------------------------------------------------------------------------------
# Import weight


def test_kernel_side_imports_stay_light(tmp_path):
    script = (
        "import sys\n"
        "import nbflows\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "nbflows.load_ipython_extension(ip)\n"
        "ip.run_cell('%%flow light\\nx = 1')\n"
        "assert ip.user_ns['x'] == 1\n"
        "print(sorted(m for m in ('tornado', 'sqlalchemy', 'httpx', 'pydantic', 'ipywidgets')"
        " if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV}
    env.update(NBFLOWS_FLOW_RUN_ID="run-1", NBFLOWS_RUN_KIND="notebook")
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------
# Loading the extension


def test_load_ext_makes_nbflows_available_as_the_readme_uses_it(ip):
    import nbflows

    ip.user_ns.pop("nbflows", None)
    ip.run_line_magic("reload_ext", "nbflows")
    assert ip.user_ns["nbflows"] is nbflows
    # The README's notebook cells call `nbflows.widgets...` right after `%load_ext nbflows`.
    assert ip.run_cell("picker_factory = nbflows.widgets.pool_picker").success


def test_load_ext_leaves_a_users_own_nbflows_variable_alone(ip):
    ip.user_ns["nbflows"] = "mine"
    try:
        ip.run_line_magic("reload_ext", "nbflows")
        assert ip.user_ns["nbflows"] == "mine"
    finally:
        ip.user_ns.pop("nbflows")
