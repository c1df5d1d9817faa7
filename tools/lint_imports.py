"""Check the layering contracts of pyproject.toml (`[tool.importlinter]`) with import-linter.

import-linter finds a package's modules by walking its folder, but three faces of nbflows live at
the repository root and are mapped into the package by setuptools (`extension/` is
`nbflows.extension`, ...). So the contracts are checked on a copy of the package as Python sees
it: `nbflows/` with the faces in place, on a temporary path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = ("extension", "kernel_magics", "widgets")


def main() -> int:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "templates", "static")
    with tempfile.TemporaryDirectory(prefix="nbflows-layers-") as tmp:
        package = Path(tmp) / "nbflows"
        shutil.copytree(REPO / "nbflows", package, ignore=ignore)
        for face in FACES:
            shutil.copytree(REPO / face, package / face, ignore=ignore)
        env = {**os.environ, "PYTHONPATH": tmp}
        lint = Path(sys.executable).with_name("lint-imports")
        cmd = [str(lint), str(REPO / "pyproject.toml"), "--no-cache"]
        return subprocess.run(cmd, env=env, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
