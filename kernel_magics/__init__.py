"""The kernel side of nbflows: `%%flow` cells, Flow objects and where their runs are reported.

`%load_ext nbflows` calls `load_ipython_extension`, which registers the magics, starts recording
the cells the kernel runs (what deploying from the notebook freezes, see `executed`) and makes
`nbflows` a name of the notebook, as the README's cells use it.
Importing this package stays light (IPython and the standard library): the HTTP client is
imported when the first flow runs with a server around, the store only when there is none.
"""

from __future__ import annotations

from typing import Any

from nbflows.client.context import KernelContext, current_context
from nbflows.kernel_magics.executed import executed_cells
from nbflows.kernel_magics.flow import Flow, FlowOptions
from nbflows.kernel_magics.magics import FlowMagics
from nbflows.kernel_magics.reporting import (
    ApiReporter,
    FlowRunRecord,
    HeadlessReporter,
    LocalStoreReporter,
    Reporter,
    get_reporter,
    set_reporter,
)
from nbflows.kernel_magics.serving import ServeHandle
from nbflows.kernel_magics.timeouts import FlowTimeout

__all__ = [
    "ApiReporter",
    "Flow",
    "FlowMagics",
    "FlowOptions",
    "FlowRunRecord",
    "FlowTimeout",
    "HeadlessReporter",
    "KernelContext",
    "LocalStoreReporter",
    "Reporter",
    "ServeHandle",
    "current_context",
    "get_reporter",
    "load_ipython_extension",
    "set_reporter",
]


def load_ipython_extension(ipython: Any) -> None:
    """Register `%%flow` and `%deploy` with `ipython`; record the cells it runs; bind `nbflows`
    in the user namespace unless the user has a variable of that name."""
    import nbflows

    ipython.register_magics(FlowMagics)
    executed_cells(ipython).install(ipython)
    ipython.user_ns.setdefault("nbflows", nbflows)
