"""Pipelines: DAGs of notebook steps, deployed, scheduled and repaired like flows.

One module per idea: `spec` (the definition and its checks), `define` (the Python builder),
`files` (YAML/TOML files), `deploy` (the server side of deploying), `advance` (starting steps
as their upstream steps end), `repair`, `graph` (a run's live DAG) and `picture` (its SVG).
Only `define`, `files`, `spec` and `picture` are meant for kernels; the rest need the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .define import OutputRef, ParamRef, Pipeline, Step

__all__ = ["OutputRef", "ParamRef", "Pipeline", "Step"]


def __getattr__(name: str) -> Any:
    # Lazily: `files` (which the CLI and every worker import) must not bring `define` and its
    # pydantic models along.
    if name in __all__:
        return getattr(importlib.import_module("nbflows.pipelines.define"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
