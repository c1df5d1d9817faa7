"""The CLI answers without importing what only some commands need.

nbformat imports jsonschema, whose IRI checker builds its grammars on import: about a second of
CPU on every `nbflows ...` call (`nbflows --help`, `work-pool ls`, a journey's dozens of calls)
when it was imported eagerly. Only commands that read a notebook import it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ["nbformat", "jsonschema", "papermill", "nbclient", "docker", "distributed", "sqlalchemy"]


@pytest.mark.parametrize(
    "argv", [["--help"], ["work-pool", "ls", "--help"], ["deployment", "run", "--help"]]
)
def test_cli_commands_that_read_no_notebook_import_no_notebook_library(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from nbflows.cli.app import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]
