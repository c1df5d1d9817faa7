"""The wheel holds every module of the mapped packages (setuptools' explicit package list) and the
prebuilt JupyterLab extension."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LABEXTENSION_SOURCES = REPO / "extension" / "labextension"
MAPPING = {
    "nbflows": "nbflows",
    "extension": "nbflows/extension",
    "kernel_magics": "nbflows/kernel_magics",
    "widgets": "nbflows/widgets",
}


@pytest.mark.slow
def test_wheel_contains_every_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("nbflows-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, target in MAPPING.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if LABEXTENSION_SOURCES in path.parents:  # TypeScript: shipped built, below
                continue
            relative = path.relative_to(REPO / folder)
            if folder == "nbflows" or path.suffix in {".py", ".html", ".css", ".js", ".mako"}:
                expected.add(f"{target}/{relative.as_posix()}")
    missing = sorted(expected - names)
    assert not missing, (
        f"missing from the wheel (add them to the package list in pyproject.toml): {missing}"
    )
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/nbflows.json") for n in names)

    # The labextension, where JupyterLab finds prebuilt extensions, and nothing else of its
    # sources or build in the wheel.
    lab = "nbflows-0.1.0.data/data/share/jupyter/labextensions/nbflows/"
    shipped = sorted(n.removeprefix(lab) for n in names if n.startswith(lab))
    assert "install.json" in shipped and "package.json" in shipped, shipped
    described = json.loads(zipfile.ZipFile(wheel).read(lab + "package.json"))
    entry = described["jupyterlab"]["_build"]["load"]
    assert entry in shipped, f"{entry} (the bundle's entry point) missing: {shipped}"
    assert described["jupyterlab"]["_build"].get("mimeExtension"), "no MIME renderer"
    assert not [n for n in names if "labextension" in n and not n.startswith(lab)]
