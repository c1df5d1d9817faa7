"""Papermill-style parameters: inference, schema, validation, CLI parsing, merging."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbflows.errors import InvalidInput
from nbflows.notebooks.loading import load_notebook
from nbflows.notebooks.parameters import (
    infer_parameters,
    parameter_schema,
    parameters_cell_index,
    parse_key_values,
    run_parameters,
    validate_parameters,
)

from .servers import Server, start_server
from .waiting import wait_for

DATA = Path(__file__).parent / "data"
PYTHON = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _notebook(params_source: str | None, metadata: dict | None = None):
    cells = [new_markdown_cell("# title"), new_code_cell("import os")]
    if params_source is not None:
        cell = new_code_cell(params_source)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    return new_notebook(cells=cells, metadata=metadata or PYTHON)


@pytest.fixture(scope="module")
def flows_nb():
    return load_notebook(DATA / "nb_flows.ipynb")[1]


@pytest.fixture(scope="module")
def schema(flows_nb):
    return parameter_schema(flows_nb)


@pytest.fixture(scope="module")
def props(schema):
    return schema["properties"]


def test_infer_parameters_of_fixture(flows_nb):
    assert infer_parameters(flows_nb) == {
        "repo_name": {"type": "string", "default": "nbflows", "help": "the repository to describe"},
        "limit": {"type": "integer", "default": 3, "help": "how many items"},
        "threshold": {"type": "number", "default": 0.5, "help": ""},
        "verbose": {"type": "boolean", "default": False, "help": ""},
        "labels": {"type": "array", "default": ["bug", "docs"], "help": ""},
        # written over three lines in the cell
        "options": {"type": "object", "default": {"depth": 1}, "help": ""},
        # not a literal: no default, type unknown
        "stamp": {"type": None, "default": None, "help": "computed, not a literal"},
    }
    assert list(infer_parameters(flows_nb)) == [
        "repo_name", "limit", "threshold", "verbose", "labels", "options", "stamp",
    ]  # fmt: skip


def test_annotations_and_type_comments_win_over_the_literal():
    nb = _notebook(
        "ratio: float = 1\n"
        "names: List[str] = []\n"
        "mapping: Dict[str, int] = {}\n"
        "maybe: Optional[int] = None\n"
        "code = 5  # type: str\n"
        "nothing = None\n"
        "raw = b'bytes'\n"
        "pair = (1, 2)\n"
    )
    params = infer_parameters(nb)
    assert {name: p["type"] for name, p in params.items()} == {
        "ratio": "number",
        "names": "array",
        "mapping": "object",
        "maybe": None,  # Optional: unknown rather than wrongly strict
        "code": "string",
        "nothing": None,
        "raw": None,  # bytes have no JSON form
        "pair": "array",
    }
    assert params["ratio"]["default"] == 1
    assert params["raw"]["default"] is None
    assert params["pair"]["default"] == [1, 2]


def test_no_parameters_cell_means_no_parameters():
    nb = _notebook(None)
    assert parameters_cell_index(nb) is None
    assert infer_parameters(nb) == {}
    assert parameter_schema(nb) == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("source", "kernelspec"),
    [
        ('repo <- "x"', {"name": "ir", "language": "R", "display_name": "R"}),
        ('repo="x"', {"name": "bash", "language": "bash", "display_name": "Bash"}),
    ],
    ids=["R", "bash"],
)
def test_a_parameters_cell_papermill_cannot_inspect_takes_any_parameter(source, kernelspec):
    nb = _notebook(source, metadata={"kernelspec": kernelspec})
    assert parameters_cell_index(nb) == 2
    assert infer_parameters(nb) == {}
    schema = parameter_schema(nb)
    assert schema == {"type": "object", "properties": {}, "additionalProperties": True}
    # As with papermill: every parameter given is injected, in the notebook's language.
    values = {"repo": "y", "n": [1, {"a": 2}]}
    assert validate_parameters(schema, values) == values


def test_parameter_schema(flows_nb):
    schema = parameter_schema(flows_nb)
    assert schema["type"] == "object"
    assert "required" not in schema
    assert schema["properties"]["repo_name"] == {
        "type": "string",
        "default": "nbflows",
        "description": "the repository to describe",
    }
    assert schema["properties"]["threshold"] == {"type": "number", "default": 0.5}
    assert schema["properties"]["stamp"] == {"description": "computed, not a literal"}


def test_validate_accepts_valid_values(schema):
    values = {"repo_name": "x", "limit": 2, "threshold": 1, "verbose": True, "labels": []}
    assert validate_parameters(schema, values) == values
    # unknown type (non-literal default) accepts anything
    assert validate_parameters(schema, {"stamp": [1, {"a": None}]}) == {"stamp": [1, {"a": None}]}
    assert validate_parameters(schema, {}) == {}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"limit": True}, "parameter 'limit' must be an integer, got true (a boolean)"),
        ({"limit": 2.5}, "parameter 'limit' must be an integer, got 2.5 (a number)"),
        ({"threshold": False}, "parameter 'threshold' must be a number, got false (a boolean)"),
        ({"repo_name": 123}, "parameter 'repo_name' must be a string, got 123 (an integer)"),
        ({"verbose": "yes"}, "parameter 'verbose' must be a boolean (true or false), got \"yes\""),
        ({"labels": "bug"}, "parameter 'labels' must be an array (a list), got \"bug\""),
        ({"options": [1]}, "parameter 'options' must be an object (a dict), got [1] (an array)"),
        ({"limit": None}, "parameter 'limit' must be an integer, got null (null)"),
    ],
)
def test_validate_rejects_wrong_types(schema, values, expected):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(schema, values)
    assert expected in info.value.message
    assert info.value.status == 422


def test_validate_reports_every_wrong_value(schema):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(schema, {"limit": "ten", "repo_name": 5, "threshold": 0.1})
    message = info.value.message
    assert message.startswith("Invalid parameter values: ")
    assert "'limit' must be an integer, got \"ten\" (a string)" in message
    assert "'repo_name' must be a string, got 5 (an integer)" in message
    assert "threshold" not in message
    assert len(info.value.details["errors"]) == 2


def test_validate_rejects_unknown_names_listing_valid_ones(schema):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(schema, {"repo": "x", "limit": 1, "lmit": 2})
    message = info.value.message
    assert message.startswith("Unknown parameters 'repo', 'lmit'. Valid parameters: ")
    assert "repo_name (string), limit (integer), threshold (number)" in message
    assert message.endswith("options (object), stamp")
    assert info.value.details["unknown"] == ["repo", "lmit"]

    with pytest.raises(InvalidInput, match=r"^Unknown parameter 'repo'\. Valid"):
        validate_parameters(schema, {"repo": "x"})


@pytest.mark.parametrize("cell", [None, "# no assignment yet"], ids=["no cell", "empty cell"])
def test_validate_without_parameters_says_so(cell):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(parameter_schema(_notebook(cell)), {"repo_name": "x"})
    assert info.value.message == (
        "Unknown parameter 'repo_name': the notebook defines no parameters (they are the "
        "assignments of its code cell tagged 'parameters'), so it accepts none"
    )


def test_validate_rejects_non_mapping(schema):
    with pytest.raises(InvalidInput, match=r"must be an object mapping names to values, got \[1\]"):
        validate_parameters(schema, [1])  # type: ignore[arg-type]


def test_parsed_cli_values_are_validated(schema):
    parsed = parse_key_values(["limit=ten"], "--param", schema)
    with pytest.raises(InvalidInput, match="'limit' must be an integer, got \"ten\""):
        validate_parameters(schema, parsed)


def test_run_parameters_are_the_deployments_overridden_by_the_runs():
    deployment = {"a": 1, "b": 2}
    assert run_parameters(deployment, {"b": 20, "c": 30}) == {"a": 1, "b": 20, "c": 30}
    assert run_parameters(deployment, None) == deployment
    assert run_parameters(None, {}) == {}
    assert run_parameters(None, {"a": None}) == {"a": None}
    assert deployment == {"a": 1, "b": 2}  # the inputs are not modified


# -- through a real server and its embedded worker ---------------------------------------------
# The tests that use the module's server share one xdist worker (`--dist loadgroup`).
SERVER_GROUP = pytest.mark.xdist_group("parameters-server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("parameters"))
    try:
        for name in ("params_python.ipynb", "nb_v3.ipynb", "nb_kernel_python.ipynb"):
            shutil.copy(DATA / name, srv.root / name)
        shutil.copy(DATA / "nb_no_kernelspec.ipynb", srv.root / "no_kernelspec.ipynb")
        with srv.client() as api:
            api.create_work_pool("params", type="process")
        yield srv
    finally:
        srv.stop()


def _deploy(srv: Server, path: str, name: str, **fields: Any) -> dict[str, Any]:
    with srv.client() as api:
        return api.deploy(path=path, name=name, work_pool_name="params", **fields)


def _finished_run(srv: Server, ref: str, **parameters: Any) -> tuple[dict[str, Any], list[str]]:
    """Run deployment `ref` with `parameters`; the finished run and its stdout lines."""
    with srv.client() as api:
        run_id = str(api.create_flow_run_from_deployment(ref, parameters=parameters or None)["id"])
        run = _wait_finished(api, run_id)
        lines = api.read_logs(run_id, limit=1000)["items"]
    return run, [x["message"] for x in lines if x["source"] == "stdout"]


def _wait_finished(api: Any, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = api.read_flow_run(run_id)
        return run if run["state"]["type"] in TERMINAL else None

    return wait_for(finished, f"run {run_id} to finish", timeout=120)


TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
COMPUTED = [
    "start = datetime.date(2024, 1, 1) (date)",
    "out = 'results/report.csv' (str)",
    "pair = (1, 2) (tuple)",
]


@SERVER_GROUP
@pytest.mark.slow
def test_manual_runs_keep_the_notebooks_computed_defaults(server: Server) -> None:
    deployment = _deploy(server, "params_python.ipynb", "manual", parameters={"n": 4})
    ref = deployment["full_name"]

    run, printed = _finished_run(server, ref)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    # What the run sets is what the deployment set: the notebook computes the rest itself.
    assert run["parameters"] == {"n": 4}
    assert printed == [*COMPUTED, "n = 4 (int)", "options = {'depth': 1} (dict)",
                       "labels = ['a', 'b'] (list)"]  # fmt: skip

    nested = {"depth": 3, "filters": [{"field": "x", "in": [1, 2]}], "on": True}
    run, printed = _finished_run(server, ref, n=5, options=nested, labels=[1, [2, "three"]])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"] == {"n": 5, "options": nested, "labels": [1, [2, "three"]]}
    assert printed == [*COMPUTED, "n = 5 (int)", f"options = {nested!r} (dict)",
                       "labels = [1, [2, 'three']] (list)"]  # fmt: skip


@SERVER_GROUP
@pytest.mark.slow
def test_scheduled_runs_keep_the_notebooks_computed_defaults(server: Server) -> None:
    deployment = _deploy(
        server,
        "params_python.ipynb",
        "scheduled",
        parameters={"labels": ["x"]},
        schedules=[{"kind": "interval", "interval": 3600}],
    )
    with server.client() as api:
        upcoming = wait_for(
            lambda: api.upcoming_runs(deployment["id"]), "the scheduler to create runs", 60
        )
    # A scheduled run sets what the deployment sets, nothing more: no None for computed values.
    assert all(r["parameters"] == {"labels": ["x"]} for r in upcoming)


@SERVER_GROUP
def test_run_parameters_are_still_validated_against_the_notebook(server: Server) -> None:
    deployment = _deploy(server, "params_python.ipynb", "validated")
    runs = f"deployments/{deployment['id']}/runs"
    unknown = server.http("POST", runs, json={"parameters": {"count": 1}})
    assert unknown.status_code == 422
    message = unknown.json()["message"]
    assert message == (
        "Unknown parameter 'count'. Valid parameters: start, out, pair (array), n (integer), "
        "options (object), labels (array)"
    )
    wrong = server.http("POST", runs, json={"parameters": {"n": "five"}})
    assert wrong.status_code == 422
    assert "parameter 'n' must be an integer, got \"five\"" in wrong.json()["message"]


# -- notebook formats and kernels ---------------------------------------------------------------


def test_nbformat_v3_notebooks_are_read_as_v4() -> None:
    _, nb = load_notebook(DATA / "nb_v3.ipynb")
    assert nb.nbformat == 4
    assert [c.source for c in nb.cells] == ["x = 1", "print(f'x = {x}')"]
    assert parameter_schema(nb)["properties"] == {"x": {"type": "integer", "default": 1}}


@SERVER_GROUP
@pytest.mark.slow
def test_nbformat_v3_notebooks_deploy_and_run(server: Server) -> None:
    deployment = _deploy(server, "nb_v3.ipynb", "v3")
    assert deployment["parameter_schema"]["properties"] == {"x": {"type": "integer", "default": 1}}
    run, printed = _finished_run(server, deployment["full_name"], x=7)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert printed == ["x = 7"]


@SERVER_GROUP
@pytest.mark.slow
def test_the_kernel_name_python_runs_in_python3_as_in_jupyter(server: Server) -> None:
    deployment = _deploy(server, "nb_kernel_python.ipynb", "python")
    run, printed = _finished_run(server, deployment["full_name"], x=2)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert printed == ["x = 2"]


@SERVER_GROUP
@pytest.mark.slow
def test_a_notebook_without_kernelspec_deploys_with_a_named_kernel(server: Server) -> None:
    refused = server.http(
        "POST",
        "deployments",
        json={"path": "no_kernelspec.ipynb", "name": "nokernel", "work_pool_name": "params"},
    )
    assert refused.status_code == 422
    assert "has no kernel" in refused.json()["message"]
    assert "--kernel" in refused.json()["message"]

    unknown = server.http(
        "POST",
        "deployments",
        json={
            "path": "no_kernelspec.ipynb",
            "name": "nokernel",
            "work_pool_name": "params",
            "kernel_name": "pyhton3",
        },
    )
    assert unknown.status_code == 422
    assert "No kernel named 'pyhton3' is installed" in unknown.json()["message"]
    assert "python3" in unknown.json()["details"]["installed"]

    # The CLI, as a user types it (papermill's -k).
    done = server.cli("deploy", "no_kernelspec.ipynb", "--name", "nokernel", "--pool", "params",
                      "--kernel", "python")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with server.client() as api:
        frozen = api.read_deployment_notebook("no_kernelspec/nokernel")
    assert frozen["metadata"]["kernelspec"]["name"] == "python3"
    assert frozen["metadata"]["kernelspec"]["language"] == "python"
    run, _ = _finished_run(server, "no_kernelspec/nokernel")
    assert run["state"]["type"] == "COMPLETED", run["state"]


@SERVER_GROUP
def test_nbflows_deploy_names_the_kernel(server: Server) -> None:
    import nbflows

    with server.client() as api:
        deployment = nbflows.deploy(
            server.root / "no_kernelspec.ipynb", "py-api", "params", kernel="python3", client=api
        )
        frozen = api.read_deployment_notebook(deployment["id"])
    assert frozen["metadata"]["kernelspec"]["name"] == "python3"
