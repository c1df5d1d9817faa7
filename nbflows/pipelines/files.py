"""Pipelines written as YAML or TOML files, for those who prefer files to Python:

    name: sales
    parameters: {day: "2026-01-01"}
    steps:
      - name: ingest
        notebook: ingest.ipynb          # relative to this file's folder
        pool: cpu
        parameters: {day: {$param: day}}
      - name: fetch
        notebook: fetch.ipynb
        pool: io
        map: {region: [eu, us, apac]}
      - name: report
        notebook: report.ipynb
        flow: summarize                 # one %%flow cell of it
        pool: cpu
        parameters: {path: {$output: ingest.path}, rows: {$output: fetch.rows}}

`nbflows deploy sales.yaml --name nightly --cron "0 6 * * *"` deploys it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbflows.errors import InvalidInput

__all__ = ["PIPELINE_SUFFIXES", "is_pipeline_file", "load_pipeline_file"]

PIPELINE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def is_pipeline_file(path: str) -> bool:
    return Path(path).suffix.lower() in PIPELINE_SUFFIXES


def load_pipeline_file(path: str | Path) -> dict[str, Any]:
    """The pipeline of a YAML, TOML or JSON file, with relative notebook paths made absolute
    (from the file's folder). `InvalidInput` for a file that cannot be read or parsed."""
    file = Path(path).expanduser().resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read pipeline file {path}: {exc.strerror or exc}") from None
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # each parser has its own error class; all mean "not parseable"
        raise InvalidInput(
            f"pipeline file {path} is not valid {suffix[1:].upper()}: {exc}"
        ) from None
    if not isinstance(data, dict) or "steps" not in data:
        raise InvalidInput(
            f"pipeline file {path} must hold a mapping with 'name' and 'steps' (and optionally "
            "'parameters')"
        )
    data.setdefault("name", file.stem)
    steps = data.get("steps")
    if isinstance(steps, list):
        for step in steps:
            if isinstance(step, dict) and isinstance(step.get("notebook"), str):
                notebook = Path(step["notebook"]).expanduser()
                if not notebook.is_absolute():
                    step["notebook"] = str((file.parent / notebook).resolve())
    return data
