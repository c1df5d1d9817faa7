"""A worker (`nbflows worker start`, the embedded one too) imports only what it uses: neither the
pydantic models of pipelines nor the IRI grammar jsonschema (under nbformat, which running
notebooks needs) would build on import (about 1 s of CPU and 20 MiB kept); notebooks are still
validated."""

from __future__ import annotations

import subprocess
import sys

COMMAND = """
import sys
import nbflows.cli.app
import nbformat
from nbflows.execution import engine
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
nbformat.validate(nb)
broken = nbformat.v4.new_notebook()
broken.cells = [{"cell_type": "code"}]
try:
    nbformat.validate(broken)
except nbformat.ValidationError:
    print("invalid notebook refused")
print(sorted(m for m in ("pydantic", "lark", "alembic", "sqlalchemy") if m in sys.modules))
"""


def test_a_worker_imports_neither_pydantic_nor_the_iri_grammar() -> None:
    out = subprocess.run([sys.executable, "-c", COMMAND], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["invalid notebook refused", "[]"], out.stdout


def test_pipelines_are_still_there_for_who_asks() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from nbflows.pipelines import Pipeline, Step; print(Pipeline)"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "nbflows.pipelines.define.Pipeline" in out.stdout
