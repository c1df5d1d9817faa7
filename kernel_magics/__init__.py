"""The kernel side of nbflows: `%%flow` cells, Flow objects and where their runs are reported.

`%load_ext nbflows` calls `load_ipython_extension`, which registers the magics and nothing else.
Importing this package stays light (IPython and the standard library): the HTTP client is
imported when the first flow runs with a server around, the store only when there is none.
"""

from __future__ import annotations

from typing import Any

from nbflows.kernel_magics.context import KernelContext, current_context
from nbflows.kernel_magics.flow import Flow, FlowOptions, FlowTimeout, ServeHandle
from nbflows.kernel_magics.magics import FlowMagics
from nbflows.kernel_magics.reporting import (
    EVENT_MIME_TYPE,
    ApiReporter,
    FlowRunRecord,
    HeadlessReporter,
    LocalStoreReporter,
    Reporter,
    get_reporter,
    set_reporter,
)

__all__ = [
    "EVENT_MIME_TYPE",
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
    """Register `%%flow` and `%deploy` with `ipython`."""
    ipython.register_magics(FlowMagics)
