"""Pipelines: DAGs of notebook steps, deployed, scheduled and repaired like flows.

One module per idea: `spec` (the definition and its checks), `define` (the Python builder),
`files` (YAML/TOML files), `deploy` (the server side of deploying), `advance` (starting steps
as their upstream steps end), `repair`, `graph` (a run's live DAG) and `picture` (its SVG).
Only `define`, `files`, `spec` and `picture` are meant for kernels; the rest need the store.
"""

from __future__ import annotations

from .define import OutputRef, ParamRef, Pipeline, Step

__all__ = ["OutputRef", "ParamRef", "Pipeline", "Step"]
