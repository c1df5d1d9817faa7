"""Compiling a `%%flow` cell's code the way IPython runs a cell: IPython syntax transformed,
`ast_node_interactivity` and a trailing `;` honoured, tracebacks pointing at the cell's own lines.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, Any

from IPython.core.displayhook import DisplayHook
from IPython.core.error import UsageError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


@dataclass
class Program:
    """A flow body compiled for one way of running it."""

    filename: str
    steps: list[CodeType] = field(default_factory=list)
    #: The last expression, evaluated for its value (calls, not cells: a cell displays it).
    result: CodeType | None = None


# --------------------------------------------------------------------------------------------
# Compiling a body the way IPython compiles a cell


def compile_cell(
    shell: InteractiveShell, source: str, first_line: str, cell_number: int, *, display: bool
) -> Program:
    transformed = shell.transform_cell(source)
    # Line 1 of the cell is the magic line: with it in front, line numbers in tracebacks are
    # the cell's own, and the cached text shows the cell as the user wrote it.
    filename = shell.compile.cache(f"{first_line}\n{transformed}", cell_number, raw_code=source)
    tree = shell.compile.ast_parse("\n" + transformed, filename=filename)
    tree = shell.transform_ast(tree)
    nodes: list[ast.stmt] = list(tree.body)
    program = Program(filename)
    result: ast.Expr | None = None
    if display:
        quiet = ";" in source and DisplayHook.semicolon_at_end_of_expression(source)
        exec_nodes, shown = _split_interactive(
            nodes, "none" if quiet else shell.ast_node_interactivity
        )
    else:
        shown = []
        if nodes and isinstance(nodes[-1], ast.Expr):
            exec_nodes, result = nodes[:-1], nodes[-1]
        else:
            exec_nodes = nodes
    # Compiled as IPython does (top-level await allowed) only to say clearly that it is not
    # supported here: a magic runs synchronously, inside the kernel's running event loop.
    compiler: Any = shell.compile  # typed as taking source text; it compiles ASTs too
    with compiler.extra_flags(getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)):
        if exec_nodes:
            program.steps.append(compiler(ast.Module(exec_nodes, []), filename, "exec"))
        for node in shown:
            program.steps.append(compiler(ast.Interactive([node]), filename, "single"))
        if result is not None:
            program.result = compiler(ast.Expression(result.value), filename, "eval")
    codes = [*program.steps, *([program.result] if program.result else [])]
    if any(code.co_flags & inspect.CO_COROUTINE for code in codes):
        raise UsageError(
            "top-level `await` is not supported in a %%flow cell; put the async code in an "
            "`async def main()` and call `asyncio.run(main())` from a thread, or use "
            "`nest_asyncio`"
        )
    return program


_ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)


def _split_interactive(
    nodes: list[ast.stmt], interactivity: str
) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """(nodes run silently, nodes whose value is displayed), as `run_ast_nodes` decides."""
    if not nodes:
        return [], []
    if interactivity == "last_expr_or_assign":
        last = nodes[-1]
        target: ast.expr | None = None
        if isinstance(last, ast.Assign) and len(last.targets) == 1:
            target = last.targets[0]
        elif isinstance(last, ast.AnnAssign | ast.AugAssign):
            target = last.target
        if isinstance(target, ast.Name):
            shown = ast.Expr(ast.Name(target.id, ast.Load()))
            ast.copy_location(shown, last)
            ast.fix_missing_locations(shown)
            return nodes, [shown]
        interactivity = "last_expr"
    if interactivity == "last_expr":
        interactivity = "last" if isinstance(nodes[-1], ast.Expr) else "none"
    if interactivity == "none":
        return nodes, []
    if interactivity == "last":
        return nodes[:-1], nodes[-1:]
    if interactivity == "all":
        return [], nodes
    raise UsageError(f"unknown InteractiveShell.ast_node_interactivity {interactivity!r}")
