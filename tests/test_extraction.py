"""Loading notebooks and extracting cell flows into standalone notebooks."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbflows.errors import InvalidInput, NotFound
from nbflows.notebooks.extraction import (
    extract_flow_notebook,
    find_flows,
    flow_cell_name,
    is_flow_cell,
    whole_notebook_snapshot,
)
from nbflows.notebooks.loading import (
    load_notebook,
    notebook_from_json,
    notebook_to_json,
    strip_outputs,
)

DATA = Path(__file__).parent / "data"
PYTHON = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

PARAMS_SOURCE = (
    'repo_name: str = "nbflows"  # the repository to describe\n'
    "limit = 3  # how many items\n"
    "threshold = 0.5\n"
    "verbose = False\n"
    'labels = ["bug", "docs"]\n'
    'options = {\n    "depth": 1,\n}\n'
    'stamp = "x".upper()  # computed, not a literal'
)
IMPORTS = "import json\nimport math"
HELPER = 'def describe(name, n):\n    return {"name": name, "n": n, "sqrt": math.sqrt(n)}'
GET_REPO_INFO = (
    "%%flow get_repo_info --retries 2 --log-prints\n"
    "info = describe(repo_name, limit)\n"
    "print(json.dumps(info, sort_keys=True))"
)
SUMMARIZE = "%%flow summarize\nprint(summary_prefix, repo_name, threshold)"


@pytest.fixture
def flows_nb():
    return load_notebook(DATA / "nb_flows.ipynb")[1]


def _code(source: str, tags: list[str] | None = None):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = tags
    return cell


# --- load_notebook -------------------------------------------------------------------------


def test_load_notebook_relative_to_root(tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(DATA / "nb_flows.ipynb", tmp_path / "sub" / "flows.ipynb")
    path, nb = load_notebook("sub/flows.ipynb", root_dir=tmp_path)
    assert path == (tmp_path / "sub" / "flows.ipynb").resolve()
    assert nb.metadata.kernelspec.name == "python3"
    assert len(nb.cells) == 15
    # an absolute path inside the root is fine too
    assert load_notebook(path, root_dir=tmp_path)[0] == path


@pytest.mark.parametrize(
    "make_path",
    [
        lambda root: "../outside.ipynb",
        lambda root: str(DATA / "nb_flows.ipynb"),
        lambda root: "sub/../../outside.ipynb",
    ],
    ids=["dotdot", "absolute", "nested-dotdot"],
)
def test_load_notebook_refuses_paths_outside_root(tmp_path, make_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    shutil.copy(DATA / "nb_flows.ipynb", tmp_path / "outside.ipynb")
    path = make_path(root)
    with pytest.raises(InvalidInput) as info:
        load_notebook(path, root_dir=root)
    assert info.value.message.startswith(f"{path} is outside the server's root directory {root}")
    assert info.value.status == 422


def test_load_notebook_refuses_symlink_leaving_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.ipynb").symlink_to(DATA / "nb_flows.ipynb")
    with pytest.raises(InvalidInput, match="is outside the server's root directory"):
        load_notebook("link.ipynb", root_dir=root)


def test_load_notebook_missing_file_names_resolved_path(tmp_path):
    with pytest.raises(NotFound) as info:
        load_notebook("nope/missing.ipynb", root_dir=tmp_path)
    resolved = tmp_path.resolve() / "nope" / "missing.ipynb"
    assert info.value.message == f"Notebook not found: {resolved}"
    assert info.value.status == 404


def test_load_notebook_refuses_non_notebooks(tmp_path):
    (tmp_path / "script.py").write_text("print(1)\n")
    with pytest.raises(
        InvalidInput, match=r"script\.py is not a notebook: expected a \.ipynb file"
    ):
        load_notebook(tmp_path / "script.py")
    (tmp_path / "dir.ipynb").mkdir()
    with pytest.raises(InvalidInput, match=r"dir\.ipynb is a directory"):
        load_notebook(tmp_path / "dir.ipynb")
    with pytest.raises(
        InvalidInput, match=r"nb_not_json\.ipynb: not a notebook: the file is not JSON"
    ):
        load_notebook(DATA / "nb_not_json.ipynb")
    (tmp_path / "latin1.ipynb").write_bytes(b'{"x": "\xe9"}')
    with pytest.raises(InvalidInput, match=r"Cannot read .*latin1\.ipynb"):
        load_notebook(tmp_path / "latin1.ipynb")
    (tmp_path / "bad.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(InvalidInput, match=r"bad\.ipynb: not a valid notebook: it has no 'cells'"):
        load_notebook(tmp_path / "bad.ipynb")


def test_load_notebook_refuses_notebook_without_kernelspec():
    with pytest.raises(InvalidInput) as info:
        load_notebook(DATA / "nb_no_kernelspec.ipynb")
    message = info.value.message
    assert "nb_no_kernelspec.ipynb has no kernel (metadata.kernelspec.name is missing)" in message
    assert "open it in Jupyter and pick a kernel" in message
    assert "set metadata.kernelspec" in message


def test_notebook_json_round_trip_and_missing_ids(flows_nb):
    text = notebook_to_json(flows_nb)
    assert json.loads(text)["cells"][1]["metadata"]["tags"] == ["parameters"]
    assert notebook_from_json(text) == flows_nb

    # Older tools write 4.5 notebooks without cell ids: repaired, no warning (warnings are errors).
    data = json.loads(text)
    for cell in data["cells"]:
        del cell["id"]
    data["cells"][1]["id"] = data["cells"][2]["id"] = "dup"
    repaired = notebook_from_json(json.dumps(data))
    ids = [cell.id for cell in repaired.cells]
    assert len(set(ids)) == len(ids) == 15
    nbformat.validate(repaired)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "not a notebook: the JSON has no 'nbformat' version field"),
        ('{"nbformat": 9}', "not a valid notebook: unsupported nbformat version 9"),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "x"}]}',
            "not a valid notebook",
        ),
    ],
)
def test_notebook_from_json_refuses_invalid(text, expected):
    with pytest.raises(InvalidInput, match=expected):
        notebook_from_json(text)


def test_strip_outputs_copies(flows_nb):
    stripped = strip_outputs(flows_nb)
    code = [c for c in stripped.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert flows_nb.cells[2].outputs[0].text == "imported\n"
    assert flows_nb.cells[2].execution_count == 2


# --- flow cells ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("%%flow get_repo_info --retries 2", "get_repo_info"),
        ("\n   \n%%flow  spaced\nx = 1", "spaced"),
        ("  %%flow indented", "indented"),
        ("%%flow 'quoted name' --tags a", "quoted name"),
        ("%%flow unbalanced --description 'oops", "unbalanced"),
        ("%%flow --retries 2", None),
        ("%%flow", None),
        ("%%flowx name", None),
        ("%%flow_other name", None),
        ("x = 1\n%%flow late", None),
        ("%%time\n%%flow inner", None),
        ("# %%flow commented", None),
    ],
)
def test_flow_cell_name(source, name):
    assert flow_cell_name(source) == name


def test_is_flow_cell_includes_unnamed_and_help():
    assert is_flow_cell("%%flow?")
    assert is_flow_cell("%%flow --retries 1\nx")
    assert not is_flow_cell("%%flowing x")
    assert not is_flow_cell("print('%%flow x')")


def test_find_flows(flows_nb):
    assert find_flows(flows_nb) == {"get_repo_info": 6, "summarize": 13}
    plain = load_notebook(DATA / "nb_plain.ipynb")[1]
    assert find_flows(plain) == {}


# --- extraction ------------------------------------------------------------------------------


def test_extract_first_flow(flows_nb):
    original = copy.deepcopy(flows_nb)
    extracted = extract_flow_notebook(flows_nb, "get_repo_info")

    assert [cell.source for cell in extracted.cells] == [
        PARAMS_SOURCE,
        IMPORTS,
        "%load_ext nbflows",  # the only line kept of the widget set-up cell
        HELPER,
        GET_REPO_INFO,
    ]
    assert extracted.metadata.nbflows == {
        "flow_name": "get_repo_info",
        "source_cells": [1, 2, 3, 4, 6],
    }
    assert set(extracted.metadata) == {"kernelspec", "language_info", "nbflows"}
    assert extracted.metadata.kernelspec == flows_nb.metadata.kernelspec
    assert extracted.metadata.language_info == {"name": "python"}
    assert extracted.cells[0].metadata.tags == ["parameters"]
    assert extracted.cells[2].metadata == {}
    assert all(c.cell_type == "code" for c in extracted.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in extracted.cells)
    assert [c.id for c in extracted.cells] == ["cell-1", "cell-2", "cell-3", "cell-4", "cell-6"]
    nbformat.validate(extracted)
    assert flows_nb == original  # the source notebook is not modified


def test_extract_second_flow_leaves_out_non_flow_code(flows_nb):
    extracted = extract_flow_notebook(flows_nb, "summarize")
    assert [cell.source for cell in extracted.cells] == [
        PARAMS_SOURCE,
        IMPORTS,
        "%load_ext nbflows",
        HELPER,
        'summary_prefix = "Summary of"',
        SUMMARIZE,
    ]
    # left out: markdown 0/5, the other flow 6, deploy 7, widget 8, nbflows-skip 9, empty 11,
    # raw 12, and everything below the flow (14)
    assert extracted.metadata.nbflows == {
        "flow_name": "summarize",
        "source_cells": [1, 2, 3, 4, 10, 13],
    }
    nbformat.validate(extracted)


def test_extract_puts_parameters_cell_first_and_keeps_load_ext_once():
    nb = new_notebook(
        metadata=PYTHON,
        cells=[
            _code("%load_ext nbflows\nimport math"),
            _code("%load_ext nbflows\nimport nbflows.widgets\nnbflows.widgets.run_history()"),
            _code("%reload_ext nbflows\nx = 1", tags=["nbflows-skip"]),
            _code("other.serve(interval=60)"),
            _code("%deploy other"),
            _code("form = deploy_form()"),
            new_markdown_cell("text"),
            _code("%%flow f\nprint(math.pi * n)"),
            _code("n = 2", tags=["parameters"]),
        ],
    )
    extracted = extract_flow_notebook(nb, "f")
    assert [c.source for c in extracted.cells] == [
        "n = 2",
        "%load_ext nbflows\nimport math",
        "%%flow f\nprint(math.pi * n)",
    ]
    assert extracted.metadata.nbflows["source_cells"] == [8, 0, 7]
    assert "metadata" not in extracted.metadata.nbflows
    nbformat.validate(extracted)


def test_extract_without_parameters_cell_and_load_ext_from_skipped_cell():
    nb = new_notebook(
        metadata=PYTHON,
        cells=[
            _code("%load_ext nbflows\nraise SystemExit", tags=["nbflows-skip"]),
            _code("x = 1"),
            _code("%%flow f\nprint(x)"),
        ],
    )
    extracted = extract_flow_notebook(nb, "f")
    assert [c.source for c in extracted.cells] == [
        "%load_ext nbflows",
        "x = 1",
        "%%flow f\nprint(x)",
    ]
    assert extracted.metadata.nbflows["source_cells"] == [0, 1, 2]
    assert "tags" not in extracted.cells[0].metadata


def test_extract_unknown_flow_lists_flows(flows_nb):
    with pytest.raises(NotFound) as info:
        extract_flow_notebook(flows_nb, "get_repo")
    assert info.value.message == (
        "No flow named 'get_repo' in this notebook; its flows are: 'get_repo_info', 'summarize'"
    )
    assert info.value.details["flows"] == ["get_repo_info", "summarize"]


def test_extract_from_notebook_without_flows():
    plain = load_notebook(DATA / "nb_plain.ipynb")[1]
    with pytest.raises(NotFound) as info:
        extract_flow_notebook(plain, "anything")
    assert "this notebook has no flows" in info.value.message
    assert "%%flow NAME" in info.value.message


def test_extract_refuses_flow_defined_twice():
    nb = new_notebook(
        metadata=PYTHON, cells=[_code("%%flow f\n1"), _code("%%flow f --retries 1\n2")]
    )
    with pytest.raises(InvalidInput, match=r"Flow 'f' is defined by several cells \(1 and 2\)"):
        extract_flow_notebook(nb, "f")


def test_extract_reports_syntax_error_with_cell_line():
    nb = load_notebook(DATA / "nb_syntax.ipynb")[1]
    with pytest.raises(InvalidInput) as info:
        extract_flow_notebook(nb, "broken")
    # line 1 is the magic, line 2 blank, line 3 `x = 1`, line 4 `if x == 1` (missing colon)
    assert info.value.message == (
        "Flow 'broken' (cell 3) has a syntax error on line 4 of the cell: expected ':': if x == 1"
    )
    assert info.value.details == {"flow_name": "broken", "cell_index": 2, "line": 4}


def test_extract_accepts_ipython_syntax_in_flow_body():
    nb = load_notebook(DATA / "nb_syntax.ipynb")[1]
    # `!echo`, `%time`, `files = !ls`, `os.getcwd?`, top-level await, an invalid escape sequence
    extracted = extract_flow_notebook(nb, "ok_flow")
    assert extracted.metadata.nbflows["source_cells"] == [0, 1]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("def f(:\n    pass", 2),
        ("x = 1\nreturn x", 3),
        ("!ls\n%time y = 2\nz = (", 4),
    ],
)
def test_syntax_error_line_numbers(body, line):
    nb = new_notebook(metadata=PYTHON, cells=[_code("%%flow f\n" + body)])
    with pytest.raises(InvalidInput) as info:
        extract_flow_notebook(nb, "f")
    assert info.value.details["line"] == line


def test_whole_notebook_snapshot(flows_nb):
    snapshot = whole_notebook_snapshot(flows_nb)
    assert [c.source for c in snapshot.cells] == [c.source for c in flows_nb.cells]
    assert [c.cell_type for c in snapshot.cells] == [c.cell_type for c in flows_nb.cells]
    assert snapshot.metadata.nbflows == {"flow_name": None, "whole_notebook": True}
    assert snapshot.metadata.kernelspec == flows_nb.metadata.kernelspec
    assert all(c.outputs == [] for c in snapshot.cells if c.cell_type == "code")
    assert "nbflows" not in flows_nb.metadata
    assert flows_nb.cells[6].outputs != []
    nbformat.validate(snapshot)


# --- the extracted notebook runs under plain papermill ----------------------------------------


def _without_nbflows_magic(nb):
    """The extracted notebook with `%load_ext nbflows` and the `%%flow` line removed.

    The %%flow magic belongs to nbflows.kernel_magics; removing it runs the flow body as a plain
    cell, which proves the kept cells (parameters, imports, helpers) are all the body needs.
    """
    runnable = copy.deepcopy(nb)
    runnable.cells = [c for c in runnable.cells if c.source != "%load_ext nbflows"]
    flow_cell = runnable.cells[-1]
    assert flow_cell.source.startswith("%%flow ")
    flow_cell.source = "\n".join(flow_cell.source.splitlines()[1:])
    return runnable


@pytest.mark.parametrize(
    ("flow", "expected_output"),
    [
        ("get_repo_info", '{"n": 16, "name": "injected", "sqrt": 4.0}\n'),
        ("summarize", "Summary of injected 0.5\n"),
    ],
)
def test_extracted_notebook_runs_under_papermill(flows_nb, tmp_path, flow, expected_output):
    runnable = _without_nbflows_magic(extract_flow_notebook(flows_nb, flow))
    output_path = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        runnable,
        str(output_path),
        parameters={"repo_name": "injected", "limit": 16},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    executed = nbformat.read(output_path, as_version=4)
    # papermill found the parameters cell by its tag and injected the run's values after it
    assert executed.cells[0].metadata.tags == ["parameters"]
    assert "injected-parameters" in executed.cells[1].metadata.tags
    assert 'repo_name = "injected"' in executed.cells[1].source
    outputs = executed.cells[-1].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == [expected_output]
    assert not [o for o in outputs if o.output_type == "error"]
