"""nbflows: notebook-native orchestration for Jupyter.

The public names are imported lazily so that `import nbflows` in a kernel stays cheap
(no tornado, no SQLAlchemy, no ipywidgets until they are used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Flow": "nbflows.kernel_magics.flow",
    "flow": "nbflows.kernel_magics.flow",
    "deploy": "nbflows.deploy",
    "DeploymentImage": "nbflows.images",
    "get_client": "nbflows.client",
    "run_deployment": "nbflows.client",
    "CronSchedule": "nbflows.schedules",
    "IntervalSchedule": "nbflows.schedules",
    "RRuleSchedule": "nbflows.schedules",
    "StateType": "nbflows.states",
    "output": "nbflows.kernel_magics.outputs",
    "Pipeline": "nbflows.pipelines.define",
}

_SUBMODULES = ("widgets", "kernel_magics", "client", "schedules", "pipelines")

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `nbflows.widgets.pool_picker()` works after a plain `import nbflows`
        return importlib.import_module(f"nbflows.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    from nbflows.kernel_magics import load_ipython_extension as load

    load(ipython)
