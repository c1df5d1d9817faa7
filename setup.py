"""The prebuilt JupyterLab extension, built with the package.

Everything else is in pyproject.toml. Building the package (pip install ., pip wheel, an
editable install) first builds the TypeScript front end in extension/labextension with npm
(`npm ci` and `npm run build`: @jupyterlab/builder), unless its build output is newer than its
sources, and ships it as data files under share/jupyter/labextensions/nbflows, where JupyterLab
finds prebuilt extensions. Users of the wheel need no Node.js.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
LABEXT = HERE / "extension" / "labextension"
BUILT = LABEXT / "build"
TARGET = "share/jupyter/labextensions/nbflows"
#: What the build reads: a change to any of them builds again.
SOURCES = ["package.json", "package-lock.json", "build.js", "tsconfig.json", "src", "style"]


def _newest(paths: list[Path]) -> float:
    times = [0.0]
    for path in paths:
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
        elif path.exists():
            times.append(path.stat().st_mtime)
    return max(times)


def build_labextension() -> None:
    """Build the labextension when its output is missing or older than its sources."""
    marker = BUILT / "package.json"
    if marker.exists() and marker.stat().st_mtime >= _newest([LABEXT / s for s in SOURCES]):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "building nbflows needs Node.js and npm to build its JupyterLab extension "
            f"({LABEXT}); install Node.js >= 18, or install nbflows from a wheel"
        )
    installed = LABEXT / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < _newest(
        [LABEXT / "package-lock.json"]
    ):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=LABEXT, check=True)
    subprocess.run([npm, "run", "build"], cwd=LABEXT, check=True)
    os.utime(marker)


def data_files() -> list[tuple[str, list[str]]]:
    build_labextension()
    rel = BUILT.relative_to(HERE)
    static = sorted(p.relative_to(HERE).as_posix() for p in (BUILT / "static").iterdir())
    return [
        (
            "etc/jupyter/jupyter_server_config.d",
            ["jupyter-config/jupyter_server_config.d/nbflows.json"],
        ),
        (TARGET, [f"{rel.as_posix()}/package.json", "extension/labextension/install.json"]),
        (f"{TARGET}/static", static),
    ]


setup(data_files=data_files())
