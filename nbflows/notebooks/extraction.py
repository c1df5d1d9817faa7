"""Turning a notebook into the frozen code of a deployment.

A cell flow (`%%flow NAME [options]`) is *extracted* into a standalone notebook: the
`parameters` cell, every plain code cell above the flow cell (imports, helpers, data loading), then
the flow cell.
Cells that would do something else when the flow runs headless are left out: other `%%flow` cells,
cells that deploy, serve or show nbflows widgets, cells tagged `nbflows-skip`, and markdown/raw
cells. A whole-notebook deployment freezes the notebook as it is (`whole_notebook_snapshot`).
"""

from __future__ import annotations

import ast
import copy
import re
import shlex
import warnings

from nbformat import NotebookNode, from_dict

from nbflows.errors import InvalidInput, NotFound
from nbflows.notebooks.loading import strip_outputs
from nbflows.notebooks.parameters import parameters_cell_index

__all__ = [
    "FLOW_MAGIC",
    "SKIP_TAG",
    "extract_flow_notebook",
    "find_flows",
    "flow_cell_name",
    "is_flow_cell",
    "whole_notebook_snapshot",
]

FLOW_MAGIC = "%%flow"
SKIP_TAG = "nbflows-skip"

# A cell containing any of these deploys, serves or shows widgets: in a headless run it would
# deploy again or render nothing useful, so it is not part of the flow's code.
_INTERACTIVE_MARKERS = (
    ".deploy(",
    ".serve(",
    "%deploy",
    "deploy_form(",
    "pool_picker(",
    "run_logs(",
    "run_history(",
    "nbflows.widgets",
)

# The flow cell needs the magic, so these lines survive even when their cell is left out.
_LOAD_EXT_LINE = re.compile(r"^\s*%(?:re)?load_ext\s+nbflows\s*$")


def is_flow_cell(source: str) -> bool:
    """True when the cell's first non-empty line is a `%%flow` cell magic (also `%%flow?`)."""
    return _magic_line(source.splitlines()) is not None


def flow_cell_name(source: str) -> str | None:
    """The NAME of a `%%flow NAME [options]` cell, or None (not a flow cell, or no name given)."""
    lines = source.splitlines()
    index = _magic_line(lines)
    if index is None:
        return None
    rest = lines[index].strip()[len(FLOW_MAGIC) :]
    try:
        tokens = shlex.split(rest)
    except ValueError:  # unbalanced quote in the options: the name is still the first word
        tokens = rest.split()
    if not tokens or tokens[0].startswith("-"):
        return None
    return tokens[0]


def find_flows(nb: NotebookNode) -> dict[str, int]:
    """Flow name → index of the code cell defining it, in notebook order (first cell wins)."""
    flows: dict[str, int] = {}
    for index, name in _flow_cells(nb):
        flows.setdefault(name, index)
    return flows


def extract_flow_notebook(nb: NotebookNode, flow_name: str) -> NotebookNode:
    """The standalone notebook that runs flow `flow_name` of `nb` (outputs stripped).

    Cells, in notebook order: the cell tagged `parameters` (kept first, with its tag, even when it
    sits below the flow), each plain code cell above the flow cell, then the flow cell. Left out:
    markdown and raw cells, empty cells, other `%%flow` cells, cells tagged `nbflows-skip`, and
    cells that deploy, serve or show nbflows widgets; a `%load_ext nbflows` line of a left-out
    cell is kept as a cell of its own. Metadata keeps `kernelspec` and `language_info` and records
    `nbflows = {"flow_name": ..., "source_cells": [original index of each kept cell]}`.

    Raises `NotFound` for an unknown flow (listing the notebook's flows) and `InvalidInput` when
    two cells define the flow or the flow cell's body has a syntax error (with its line number).
    """
    flows = _flow_cells(nb)
    indices = [index for index, name in flows if name == flow_name]
    if not indices:
        names = list(dict.fromkeys(name for _, name in flows))
        if names:
            found = ", ".join(repr(name) for name in names)
            message = f"No flow named {flow_name!r} in this notebook; its flows are: {found}"
        else:
            message = (
                f"No flow named {flow_name!r}: this notebook has no flows. A flow is a code "
                f"cell starting with `{FLOW_MAGIC} NAME`"
            )
        raise NotFound(message, flow_name=flow_name, flows=names)
    if len(indices) > 1:
        cells = " and ".join(str(i + 1) for i in indices)
        raise InvalidInput(
            f"Flow {flow_name!r} is defined by several cells ({cells}); rename all but one",
            flow_name=flow_name,
            cell_indices=indices,
        )
    flow_index = indices[0]
    _check_flow_syntax(nb.cells[flow_index].source, flow_name, flow_index)

    cells = nb.cells
    params_index = parameters_cell_index(nb)
    kept: list[tuple[int, NotebookNode]] = []
    if (
        params_index is not None
        and params_index != flow_index
        and cells[params_index].cell_type == "code"
    ):
        kept.append((params_index, cells[params_index]))

    magic_loaded = False
    for index in range(flow_index):
        cell = cells[index]
        if index == params_index or cell.cell_type != "code" or not cell.source.strip():
            continue
        if is_flow_cell(cell.source):
            continue
        if SKIP_TAG in _tags(cell) or _is_interactive(cell.source):
            load_lines = [ln for ln in cell.source.splitlines() if _LOAD_EXT_LINE.match(ln)]
            if load_lines and not magic_loaded:
                kept.append((index, _load_ext_cell(cell, load_lines[0].strip())))
                magic_loaded = True
            continue
        kept.append((index, cell))
        magic_loaded = magic_loaded or any(
            _LOAD_EXT_LINE.match(ln) for ln in cell.source.splitlines()
        )
    kept.append((flow_index, cells[flow_index]))

    # strip_outputs() deep-copies, so nothing below touches `nb`.
    extracted = strip_outputs(
        from_dict(
            {
                "nbformat": nb.nbformat,
                "nbformat_minor": nb.nbformat_minor,
                "metadata": {
                    key: nb.metadata[key]
                    for key in ("kernelspec", "language_info")
                    if key in nb.metadata
                },
                "cells": [cell for _, cell in kept],
            }
        )
    )
    extracted.metadata["nbflows"] = {
        "flow_name": flow_name,
        "source_cells": [index for index, _ in kept],
    }
    return extracted


def whole_notebook_snapshot(nb: NotebookNode) -> NotebookNode:
    """A copy of `nb` with outputs stripped and nothing removed, marked as a whole-notebook flow."""
    snapshot = strip_outputs(nb)
    snapshot.metadata["nbflows"] = {"flow_name": None, "whole_notebook": True}
    return snapshot


def _magic_line(lines: list[str]) -> int | None:
    """Index of the `%%flow` line when it is the first non-empty line, else None."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(FLOW_MAGIC):
            return None
        rest = stripped[len(FLOW_MAGIC) :]
        # `%%flowx` is another magic; `%%flow`, `%%flow NAME`, `%%flow?` are this one.
        return None if rest and (rest[0].isalnum() or rest[0] == "_") else index
    return None


def _flow_cells(nb: NotebookNode) -> list[tuple[int, str]]:
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            name = flow_cell_name(cell.source)
            if name is not None:
                found.append((index, name))
    return found


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


def _is_interactive(source: str) -> bool:
    return any(marker in source for marker in _INTERACTIVE_MARKERS)


def _load_ext_cell(cell: NotebookNode, line: str) -> NotebookNode:
    # A copy keeps the original cell's id (unique in the extracted notebook, valid for its
    # nbformat version) while dropping its other lines and its tags.
    replacement = copy.deepcopy(cell)
    replacement.source = line
    replacement.metadata = from_dict({})
    return replacement


def _check_flow_syntax(source: str, flow_name: str, cell_index: int) -> None:
    """`InvalidInput` when the flow body (the cell without its magic line) does not compile.

    The body is first transformed as IPython would (so `!cmd`, `%magic` and `x?` are fine) and
    compiled with top-level `await` allowed, as IPython runs cells.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    lines = source.splitlines()
    magic = _magic_line(lines)
    if magic is None:
        return
    body_lines = lines[magic + 1 :]
    # IPython drops leading blank lines; count them so line numbers refer to the cell.
    blank = 0
    while blank < len(body_lines) and not body_lines[blank].strip():
        blank += 1
    body = "\n".join(body_lines[blank:])
    if not body.strip():
        return
    offset = magic + 1 + blank  # cell line number (1-based) = body line number + offset
    try:
        code = TransformerManager().transform_cell(body + "\n")
    except Exception:
        # The transformer only fails on input that cannot tokenize; compile() reports it better.
        code = body + "\n"
    try:
        with warnings.catch_warnings():
            # Warnings such as invalid escape sequences are the kernel's to show, not errors.
            warnings.simplefilter("ignore")
            compile(code, f"<flow {flow_name}>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, True)
    except SyntaxError as exc:
        line = (exc.lineno or 1) + offset
        text = (exc.text or "").strip()
        where = f": {text}" if text else ""
        raise InvalidInput(
            f"Flow {flow_name!r} (cell {cell_index + 1}) has a syntax error on line {line} of "
            f"the cell: {exc.msg}{where}",
            flow_name=flow_name,
            cell_index=cell_index,
            line=line,
        ) from exc
    except ValueError as exc:  # e.g. a null byte in the source
        raise InvalidInput(
            f"Flow {flow_name!r} (cell {cell_index + 1}) cannot be compiled: {exc}",
            flow_name=flow_name,
            cell_index=cell_index,
        ) from exc
