"""Papermill-style parameters: inference, schema, validation, CLI parsing, merging."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbflows.errors import InvalidInput
from nbflows.notebooks import load_notebook
from nbflows.parameters import (
    default_values,
    infer_parameters,
    merge_parameters,
    parameter_schema,
    parameters_cell_index,
    parse_param_assignments,
    validate_parameters,
)

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
def props(flows_nb):
    return parameter_schema(flows_nb)["properties"]


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
    assert parameter_schema(nb) == {"type": "object", "properties": {}}


def test_language_papermill_cannot_inspect_has_no_parameters():
    nb = _notebook(
        'repo <- "x"', metadata={"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}}
    )
    assert parameters_cell_index(nb) == 2
    assert infer_parameters(nb) == {}


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


def test_default_values(props):
    assert default_values(props) == {
        "repo_name": "nbflows",
        "limit": 3,
        "threshold": 0.5,
        "verbose": False,
        "labels": ["bug", "docs"],
        "options": {"depth": 1},
    }


def test_validate_accepts_valid_values(props):
    values = {"repo_name": "x", "limit": 2, "threshold": 1, "verbose": True, "labels": []}
    assert validate_parameters(props, values) == values
    # unknown type (non-literal default) accepts anything
    assert validate_parameters(props, {"stamp": [1, {"a": None}]}) == {"stamp": [1, {"a": None}]}
    assert validate_parameters(props, {}) == {}


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
def test_validate_rejects_wrong_types(props, values, expected):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(props, values)
    assert expected in info.value.message
    assert info.value.status == 422


def test_validate_reports_every_wrong_value(props):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(props, {"limit": "ten", "repo_name": 5, "threshold": 0.1})
    message = info.value.message
    assert message.startswith("Invalid parameter values: ")
    assert "'limit' must be an integer, got \"ten\" (a string)" in message
    assert "'repo_name' must be a string, got 5 (an integer)" in message
    assert "threshold" not in message
    assert len(info.value.details["errors"]) == 2


def test_validate_rejects_unknown_names_listing_valid_ones(props):
    with pytest.raises(InvalidInput) as info:
        validate_parameters(props, {"repo": "x", "limit": 1, "lmit": 2})
    message = info.value.message
    assert message.startswith("Unknown parameters 'repo', 'lmit'. Valid parameters: ")
    assert "repo_name (string), limit (integer), threshold (number)" in message
    assert message.endswith("options (object), stamp")
    assert info.value.details["unknown"] == ["repo", "lmit"]

    with pytest.raises(InvalidInput, match=r"^Unknown parameter 'repo'\. Valid"):
        validate_parameters(props, {"repo": "x"})


def test_validate_without_parameters_cell_says_so():
    with pytest.raises(InvalidInput) as info:
        validate_parameters({}, {"repo_name": "x"})
    assert info.value.message.startswith("Unknown parameter 'repo_name': the notebook has no ")
    assert "parameters cell" in info.value.message
    assert "tagged 'parameters'" in info.value.message


def test_validate_rejects_non_mapping(props):
    with pytest.raises(InvalidInput, match=r"must be an object mapping names to values, got \[1\]"):
        validate_parameters(props, [1])  # type: ignore[arg-type]


def test_parse_param_assignments_reads_json_else_text(props):
    parsed = parse_param_assignments(
        [
            "limit=5",
            "threshold=0.25",
            "verbose=true",
            "labels=[1, 2]",
            'options={"depth": 3}',
            "stamp=hello world",
            'undeclared="quoted"',
            "empty=",
            "eq=a=b",
        ],
        props,
    )
    assert parsed == {
        "limit": 5,
        "threshold": 0.25,
        "verbose": True,
        "labels": [1, 2],
        "options": {"depth": 3},
        "stamp": "hello world",
        "undeclared": "quoted",
        "empty": "",
        "eq": "a=b",
    }


def test_parse_keeps_raw_text_for_string_parameters(props):
    assert parse_param_assignments(["repo_name=123"], props) == {"repo_name": "123"}
    assert parse_param_assignments(['repo_name="x"'], props) == {"repo_name": '"x"'}
    assert parse_param_assignments(["repo_name=true"], props) == {"repo_name": "true"}
    # without a schema the same text is JSON
    assert parse_param_assignments(["repo_name=123"], None) == {"repo_name": 123}


def test_parse_later_items_override_and_names_are_stripped():
    assert parse_param_assignments([" limit =1", "limit=2"], None) == {"limit": 2}


@pytest.mark.parametrize("item", ["repo_name", "=3", "  =x", ""])
def test_parse_rejects_malformed_items(item):
    with pytest.raises(InvalidInput) as info:
        parse_param_assignments(["ok=1", item], None)
    assert f"Invalid parameter {item!r}: expected NAME=VALUE" in info.value.message
    assert "--param repo_name=" in info.value.message


def test_parsed_cli_values_are_validated(props):
    parsed = parse_param_assignments(["limit=ten"], props)
    with pytest.raises(InvalidInput, match="'limit' must be an integer, got \"ten\""):
        validate_parameters(props, parsed)


def test_merge_parameters_run_over_deployment_over_defaults():
    defaults = {"a": 1, "b": 2, "c": 3}
    assert merge_parameters(defaults, {"b": 20, "d": 40}, {"c": 300}) == {
        "a": 1,
        "b": 20,
        "c": 300,
        "d": 40,
    }
    assert merge_parameters(defaults, None, None) == defaults
    assert merge_parameters(None, {}, {"a": None}) == {"a": None}
    # the inputs are not modified
    assert defaults == {"a": 1, "b": 2, "c": 3}
