"""The code this kernel ran, cell by cell, and the notebook a deploy freezes from it.

A notebook's saved file and what its kernel ran part ways as soon as a cell is edited and run
without saving (JupyterLab saves every two minutes at best). Deploying from the kernel deploys
what ran, not the file: the `%%flow` cell exactly as it ran, and each other cell as it last ran
when the kernel knows which cell it was. JupyterLab and Notebook 7 send each cell's id with its
execution (`cellId`, which IPython hands to `pre_run_cell` callbacks); `ExecutedCells` keeps the
last source run under each id from `%load_ext nbflows` on. The saved file gives the cells'
order, so the frozen notebook is still: the parameters cell, the plain cells above the flow
cell, the flow cell. Cells the kernel cannot match (run before the extension was loaded, or by a
front end that sends no ids) are deployed as saved, and the report says when this kernel never
ran their saved text.
"""

from __future__ import annotations

import difflib
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionInfo, InteractiveShell
    from nbformat import NotebookNode

__all__ = ["CodeAsRun", "ExecutedCell", "ExecutedCells", "code_as_run", "executed_cells"]


@dataclass(frozen=True)
class ExecutedCell:
    """One execution of a cell: its source as run, its `In [N]` number and when it ran."""

    source: str
    cell_id: str | None = None
    execution_count: int | None = None
    time: float = field(default_factory=time.time)

    def defines_flow(self, name: str) -> bool:
        """True when this cell is `%%flow name ...` (the `%%flow` line first)."""
        first = next((line.split() for line in self.source.splitlines() if line.strip()), [])
        return first[:2] == ["%%flow", name]

    def label(self) -> str:
        """`In [5] at 12:03:05`, or the time alone when the number is unknown."""
        when = time.strftime("%H:%M:%S", time.localtime(self.time))
        return f"In [{self.execution_count}] at {when}" if self.execution_count else f"at {when}"


class ExecutedCells:
    """The last source this kernel ran under each cell id, recorded by a `pre_run_cell` hook."""

    def __init__(self, shell: InteractiveShell) -> None:
        self._shell = weakref.ref(shell)
        self.by_id: dict[str, ExecutedCell] = {}
        #: The cell running now (or last run), with or without an id.
        self.current: ExecutedCell | None = None

    def install(self, shell: InteractiveShell) -> None:
        """Start recording; also records the running cell (the one loading the extension)."""
        callbacks = shell.events.callbacks["pre_run_cell"]
        if self.pre_run_cell not in callbacks:
            shell.events.register("pre_run_cell", self.pre_run_cell)
            parent = _parent_message(shell)
            code = parent.get("content", {}).get("code")
            if isinstance(code, str):
                self._record(code, parent.get("metadata", {}).get("cellId"))

    def pre_run_cell(self, info: ExecutionInfo) -> None:
        self._record(info.raw_cell or "", getattr(info, "cell_id", None))

    def _record(self, source: str, cell_id: Any) -> None:
        shell = self._shell()
        number = shell.displayhook.prompt_count if shell is not None else None
        cell = ExecutedCell(
            source=source,
            cell_id=cell_id if isinstance(cell_id, str) and cell_id else None,
            execution_count=number,
        )
        self.current = cell
        if cell.cell_id is not None:
            self.by_id[cell.cell_id] = cell

    def ran_text(self, source: str) -> bool:
        """True when this kernel ran `source` (as a whole cell) at some point."""
        shell = self._shell()
        if shell is None:
            return False
        wanted = source.strip()
        history = getattr(shell.history_manager, "input_hist_raw", [])
        return any(entry.strip() == wanted for entry in history) or any(
            cell.source.strip() == wanted for cell in self.by_id.values()
        )


_RECORDS: weakref.WeakKeyDictionary[Any, ExecutedCells] = weakref.WeakKeyDictionary()


def executed_cells(shell: InteractiveShell) -> ExecutedCells:
    """The record of `shell` (one per shell, made on first use)."""
    record = _RECORDS.get(shell)
    if record is None:
        record = _RECORDS[shell] = ExecutedCells(shell)
    return record


def _parent_message(shell: InteractiveShell) -> dict[str, Any]:
    # ipykernel's shell knows the request being executed; plain IPython has none.
    get_parent = getattr(shell, "get_parent", None)
    parent = get_parent() if callable(get_parent) else None
    return parent if isinstance(parent, dict) else {}


# --------------------------------------------------------------------------------------------
# The notebook as run


@dataclass
class CellDifference:
    """A deployed cell whose source as run differs from the saved file's."""

    label: str
    saved: str | None
    ran: str


@dataclass
class CodeAsRun:
    """The notebook to freeze (the saved file with the sources this kernel ran) and how it
    compares with the saved file."""

    notebook: NotebookNode
    flow_cell: ExecutedCell
    differences: list[CellDifference] = field(default_factory=list)
    #: Deployed cells whose saved text this kernel never ran (edited and saved, not run since).
    not_run: list[str] = field(default_factory=list)

    def report(self) -> str:
        """What was deployed, in words: the code run, and how the saved file differs."""
        head = f"Code deployed: as you ran it (flow cell {self.flow_cell.label()})"
        if not self.differences and not self.not_run:
            return head + ", the same as the saved file."
        lines = [
            head + ("; the saved file differs (not saved since):" if self.differences else ".")
        ]
        for difference in self.differences:
            lines.append(f"  {difference.label}:")
            lines.extend(f"    {line}" for line in _diff_lines(difference))
        if self.not_run:
            lines.append(
                "Deployed as saved, though this kernel has not run that text (run the cell, "
                "then deploy again, to deploy what you ran):"
            )
            lines.extend(f"  {label}" for label in self.not_run)
        return "\n".join(lines)


def code_as_run(
    saved: NotebookNode, flow_name: str, flow_cell: ExecutedCell, cells: ExecutedCells
) -> CodeAsRun:
    """The saved notebook `saved` with each cell this kernel ran under the cell's id replaced by
    its source as run, and the flow's cell by `flow_cell` (found by id, else by flow name; put
    last when the saved file does not have it). Outputs are stripped."""
    from nbformat.v4 import new_code_cell

    from nbflows.notebooks.extraction import extract_flow_notebook, find_flows
    from nbflows.notebooks.loading import strip_outputs

    nb = strip_outputs(saved)
    result = CodeAsRun(notebook=nb, flow_cell=flow_cell)
    runs: dict[int, ExecutedCell] = {}
    for index, cell in enumerate(nb.cells):
        ran = cells.by_id.get(cell.get("id") or "")
        if cell.cell_type == "code" and ran is not None:
            runs[index] = ran
    flow_index = next(
        (
            i
            for i, cell in enumerate(nb.cells)
            if flow_cell.cell_id and cell.get("id") == flow_cell.cell_id
        ),
        None,
    )
    if flow_index is None:
        flow_index = find_flows(nb).get(flow_name)
    if flow_index is None:
        nb.cells.append(new_code_cell(""))
        flow_index = len(nb.cells) - 1
    runs[flow_index] = flow_cell
    differences: dict[int, CellDifference] = {}
    for index, ran in runs.items():
        cell = nb.cells[index]
        if ran.source != cell.source:
            label = _label(ran.source, ran)
            if index == len(saved.cells):
                label += ", not in the saved file: deployed last"
            saved_source = cell.source if index < len(saved.cells) else None
            differences[index] = CellDifference(label, saved_source, ran.source)
            cell.source = ran.source

    try:
        kept = extract_flow_notebook(nb, flow_name).metadata["nbflows"]["source_cells"]
    except Exception:  # the server says what is wrong with the notebook, in its own words
        kept = list(range(len(nb.cells)))
    for index in kept:
        if index in differences:
            result.differences.append(differences[index])
        elif not cells.ran_text(nb.cells[index].source):
            result.not_run.append(_label(nb.cells[index].source, None))
    return result


def _label(source: str, ran: ExecutedCell | None) -> str:
    first = next((line.strip() for line in source.splitlines() if line.strip()), "(empty)")
    if len(first) > 60:
        first = first[:57] + "..."
    where = f" ({ran.label()})" if ran is not None and ran.execution_count else ""
    return f"cell {first!r}{where}"


_DIFF_LIMIT = 12


def _diff_lines(difference: CellDifference) -> list[str]:
    if difference.saved is None:
        return []
    lines = [
        line
        for line in difflib.unified_diff(
            difference.saved.splitlines(), difference.ran.splitlines(), lineterm="", n=0
        )
        if not line.startswith(("---", "+++", "@@"))
    ]
    lines = [f"saved {line[1:]}" if line.startswith("-") else f"ran   {line[1:]}" for line in lines]
    if len(lines) > _DIFF_LIMIT:
        hidden = len(lines) - _DIFF_LIMIT
        lines = [*lines[:_DIFF_LIMIT], f"... ({hidden} more changed lines)"]
    return lines
