"""`nbflows.output(name, value)`: recorded on the current `%%flow` run through the server,
checked (JSON, no NaN, size) in the kernel and again by the API, sent as an event when headless."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbflows.client.context import KernelContext
from nbflows.kernel_magics.reporting import (
    ApiReporter,
    FlowRunRecord,
    HeadlessReporter,
    set_reporter,
)
from nbflows.protocol import EVENT_MIME_TYPE

from .kernel_support import ipython_shell
from .servers import Server, isolate_from_servers


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "nbflows")
    shell.run_cell("import nbflows")
    return shell


@pytest.fixture
def api_reporter(server: Server) -> Iterator[ApiReporter]:
    reporter = ApiReporter(server.client())
    previous = set_reporter(reporter)
    yield reporter
    set_reporter(previous)


def test_outputs_of_a_flow_cell_are_recorded_on_its_run(
    ip: InteractiveShell, server: Server, api_reporter: ApiReporter
) -> None:
    result = ip.run_cell(
        "%%flow measure\n"
        'nbflows.output("rows", 3)\n'
        'nbflows.output("summary", {"mean": 1.5, "names": ["a", "b"]})\n'
        'nbflows.output("rows", 4)  # the same name again replaces it'
    )
    assert result.success, result.error_in_exec
    ip.run_cell('%%flow outer\nnbflows.output("level", "outer")\nouter_value = 1')
    ip.run_cell('%%flow inner\nnbflows.output("level", "inner")')
    assert api_reporter.flush(10)
    client = server.client()
    (run,) = client.list_flow_runs(flow_name="measure")
    assert run["outputs"] == {"rows": 4, "summary": {"mean": 1.5, "names": ["a", "b"]}}
    assert client.read_flow_run(run["id"])["outputs"] == run["outputs"]
    assert client.list_flow_runs(flow_name="outer")[0]["outputs"] == {"level": "outer"}
    assert client.list_flow_runs(flow_name="inner")[0]["outputs"] == {"level": "inner"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('float("nan")', "NaN"),
        ("object()", "JSON-serialisable"),
        ('"x" * 2_000_000', "at most"),
    ],
)
def test_a_value_that_cannot_be_an_output_fails_the_cell_clearly(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, value: str, words: str
) -> None:
    isolate_from_servers(monkeypatch, tmp_path / "runtime")
    ip.run_cell(f'%%flow refused\nnbflows.output("bad", {value})')
    error = ip.user_ns.get("_nbflows_last_error")
    result = ip.run_cell(f'nbflows.output("bad", {value})')
    assert error is None and not result.success
    assert words in str(result.error_in_exec), result.error_in_exec


def test_outside_any_run_output_says_where_it_records(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    isolate_from_servers(monkeypatch, tmp_path / "runtime")
    monkeypatch.delenv("NBFLOWS_FLOW_RUN_ID", raising=False)
    result = ip.run_cell('nbflows.output("x", 1)')
    assert "inside a %%flow cell" in str(result.error_in_exec)


def test_the_api_checks_outputs_too(server: Server) -> None:
    client = server.client()
    run = client.create_flow_run("api-outputs")
    url = f"flow_runs/{run['id']}/outputs"
    ok = server.http("POST", url, json={"name": "n", "value": [1, 2]})
    assert ok.status_code == 201, ok.text
    nan = server.http("POST", url, content=b'{"name": "n", "value": NaN}')
    assert nan.status_code == 422 and "NaN" in nan.json()["message"]
    big = server.http("POST", url, json={"name": "n", "value": "x" * (1024 * 1024 + 10)})
    assert big.status_code == 413, big.text
    bad_name = server.http("POST", url, json={"name": "1 bad", "value": 1})
    assert bad_name.status_code == 422 and "name" in bad_name.json()["message"]
    missing = server.http("POST", "flow_runs/nope/outputs", json={"name": "n", "value": 1})
    assert missing.status_code == 404
    assert client.read_flow_run(run["id"])["outputs"] == {"n": [1, 2]}


def test_a_headless_kernel_sends_outputs_as_events_in_its_output() -> None:
    sent: list[dict[str, Any]] = []
    context = KernelContext(flow_run_id="r1", flow_name="deployed", run_kind="cell")
    reporter = HeadlessReporter(context, publish=sent.append)
    deployed = FlowRunRecord(flow_name="deployed")
    child = FlowRunRecord(flow_name="child", parent=deployed)
    reporter.output(None, "a", 1)  # a whole-notebook run, outside any %%flow cell
    reporter.output(deployed, "b", 2)  # the deployed cell flow is the worker's run itself
    reporter.output(child, "c", 3)
    events = [data[EVENT_MIME_TYPE] for data in sent]
    assert [(e["event"], e["run_key"], e["name"], e["value"]) for e in events] == [
        ("output", None, "a", 1),
        ("output", None, "b", 2),
        ("output", child.key, "c", 3),
    ]
